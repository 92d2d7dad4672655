"""Property-based tests of every reader on random JSON, random tables and random unicode: the
only exception that escapes is InputError (naming the file), every rejected transcript is an
InputError value naming its file and line (or row, or item), and every transcript that comes
out is one the scorer can take. Small inputs, 200 examples per reader, no deadline."""

import csv
import io
import json
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualaudit.errors import InputError
from qualaudit.io import ColumnMap, iter_records
from qualaudit.schema import AGENT_TYPES, ROLES, Transcript, Turn

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

# Any unicode, lone surrogates included (JSON can carry them escaped).
any_text = st.text(st.characters(codec=None), max_size=12)
json_scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20)
                | st.floats(allow_nan=True, allow_infinity=True) | any_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(any_text, inner, max_size=3), max_leaves=8)
role_names = st.sampled_from(["user", "assistant", "agent", "customer", "system", "SYSTEM",
                              "tool", "bot", "visitor", ""]) | any_text
small_ids = st.sampled_from(["a", "b", "1", "1.0", " a ", ""]) | st.integers(0, 3) | json_scalars
turn_texts = st.sampled_from(["hi", "my order", "  ", "sorry about that"]) | any_text | json_values
# Values that are usually valid, so that examples also reach the paths of good transcripts.
good_roles = st.sampled_from(["user", "assistant", "agent", "customer", "system"])
good_texts = st.sampled_from(["hi", "my order", "sorry about that", "thanks"]) | st.text(min_size=1, max_size=8)
good_ids = st.sampled_from(["a", "b", "c", "d", "e"])
roles = st.one_of(good_roles, good_roles, role_names)
texts = st.one_of(good_texts, good_texts, turn_texts)
ids = st.one_of(good_ids, good_ids, small_ids)


@st.composite
def turn_objects(draw):
    keys = draw(st.lists(st.sampled_from(["role", "speaker", "sender", "content", "text",
                                          "message", "timestamp", "agent_type", "type"]),
                         max_size=5, unique=True))
    values = {"role": role_names, "speaker": role_names, "sender": role_names,
              "content": turn_texts | st.lists(st.fixed_dictionaries(
                  {"type": st.sampled_from(["text", "image", 3]), "text": turn_texts}), max_size=2),
              "agent_type": st.sampled_from(["ai", "human", "bot", "robot"]) | json_scalars}
    return {key: draw(values.get(key, json_values)) for key in keys}


@st.composite
def transcript_objects(draw):
    """Dicts shaped like transcripts, near enough to valid to reach deep into the readers."""
    obj = {}
    for key in draw(st.lists(st.sampled_from(["id", "conversation_id", "messages", "turns",
                                              "agent_type", "metadata", "channel"]),
                             max_size=5, unique=True)):
        if key in ("messages", "turns"):
            obj[key] = draw(st.lists(turn_objects(), max_size=4) | json_values)
        elif key in ("id", "conversation_id"):
            obj[key] = draw(small_ids | json_values)
        else:
            obj[key] = draw(json_values)
    return obj


@st.composite
def likely_transcripts(draw):
    """Transcript dicts that are valid more often than not, with random parts here and there."""
    text_key = draw(st.sampled_from(["content", "text"]))
    optional = {"timestamp": st.none() | st.sampled_from(["2024-01-01T10:00:00", "x"]) | json_scalars,
                "agent_type": st.sampled_from(["ai", "human", "bot"]) | json_scalars}
    turns = draw(st.lists(st.fixed_dictionaries({"role": roles, text_key: texts}, optional=optional),
                          min_size=1, max_size=4))
    obj = {draw(st.sampled_from(["id", "conversation_id"])): draw(ids),
           draw(st.sampled_from(["messages", "turns"])): turns}
    extras = st.fixed_dictionaries({}, optional={
        "agent_type": st.sampled_from(["ai", "human", "mixed"]) | json_scalars,
        "metadata": st.dictionaries(st.text(max_size=4), json_values, max_size=2) | json_values,
        "channel": json_values, "team": st.text(max_size=4)})
    return {**obj, **draw(extras)}


def check_records(make_records, source_named=True):
    """Read everything; only InputError may escape, and errors must say where."""
    try:
        records = list(make_records())
    except InputError as exc:
        assert not source_named or exc.source is not None, exc
        return
    for record in records:
        if isinstance(record, InputError):
            assert record.source is not None and record.line is not None, record
            assert str(record)
        else:
            assert isinstance(record, Transcript), record
            assert isinstance(record.id, str) and record.id.strip()
            assert record.scored_turns, record
            assert all(t.role in ROLES and isinstance(t.text, str) and t.text.strip()
                       for t in record.turns)
            assert record.agent_type in AGENT_TYPES
            json.dumps(dict(record.metadata), allow_nan=False)  # plain JSON, as rows need


def written(data: bytes, name: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="qualaudit-fuzz-"))
    path = directory / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ JSONL
jsonl_lines = st.one_of(
    likely_transcripts().map(lambda o: json.dumps(o).encode()),
    likely_transcripts().map(lambda o: json.dumps(o).encode()),
    transcript_objects().map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=30),
    any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(st.lists(jsonl_lines, max_size=6), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_jsonl_reader(lines, newline, bom):
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines)
    path = written(data, "in.jsonl")
    check_records(lambda: iter_records(path))


# -------------------------------------------------------------------------- CSV / TSV
column_names = st.sampled_from(["conversation_id", "id", "ticket_id", "role", "speaker", "text",
                                "message", "order", "seq", "timestamp", "created_at", "channel",
                                "agent_type", "lang"]) | any_text
cell_text = (st.sampled_from(["a", "b", "user", "assistant", "hi", "1", "2", "", "2024-01-0"
                              "1T10:00:00", '"', ",", "\t", "\n"]) | any_text)


def cells_for(name: str):
    """Cells that fit a column by its name (usually), else any cell."""
    fitting = {"conversation_id": ids.map(str), "id": ids.map(str), "role": roles,
               "speaker": roles, "text": texts.map(str), "message": texts.map(str),
               "order": st.integers(-2, 9).map(str), "seq": st.integers(0, 9).map(str),
               "timestamp": st.sampled_from(["2024-01-01T10:00:00", "2024-01-01 09:00", "x", ""]),
               "agent_type": st.sampled_from(["ai", "human", "bot", ""])}
    return st.one_of(fitting.get(name, cell_text), cell_text) if name in fitting else cell_text


@st.composite
def headers(draw):
    """Usually the id, role and text columns and some others; sometimes anything."""
    core = draw(st.lists(st.sampled_from(["conversation_id", "role", "text"]), min_size=2,
                         max_size=3, unique=True) | st.just(["conversation_id", "role", "text"]))
    extra = draw(st.lists(column_names, max_size=3))
    return draw(st.permutations(core + extra))


@st.composite
def csv_files(draw, sep):
    header = draw(headers())
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        cells = [draw(cells_for(name)) for name in header]
        if draw(st.integers(0, 9)) == 0:  # now and then a row with a field more or less
            cells = cells[:-1] if cells and draw(st.booleans()) else cells + [draw(cell_text)]
        rows.append(cells)
    if draw(st.integers(0, 3)):  # properly quoted
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
        text = buffer.getvalue()
    else:  # naive joins: stray quotes, separators and line breaks in cells
        text = "\n".join(sep.join(cells) for cells in [header, *rows])
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.binary(max_size=8)) + data
    return data


@FUZZ
@given(st.sampled_from([",", "\t"]).flatmap(lambda sep: st.tuples(st.just(sep), csv_files(sep))),
       st.booleans())
def test_csv_and_tsv_readers(sep_and_data, explicit_columns):
    sep, data = sep_and_data
    path = written(data, "in.csv" if sep == "," else "in.tsv")
    columns = ColumnMap(id="id", role="role", text="text") if explicit_columns else None
    check_records(lambda: iter_records(path, columns=columns))


# ---------------------------------------------------- Parquet, DataFrame and Dataset tables
def no_surrogates(text: str) -> bool:  # Arrow strings are valid UTF-8
    return not any("\ud800" <= c <= "\udfff" for c in text)


column_types = {
    "str": st.none() | cell_text.filter(no_surrogates),
    "int": st.none() | st.integers(-(2**62), 2**62),
    "float": st.none() | st.floats(allow_nan=True, allow_infinity=True),
    "bool": st.none() | st.booleans(),
    "time": st.none() | st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
}


@st.composite
def tables(draw):
    """{column: values} with one type per column (text for columns named like the id, role
    or text, usually); sometimes one transcript per row, in a messages column."""
    names = [n for n in draw(headers()) if no_surrogates(n)]
    names = list(dict.fromkeys(names)) or ["conversation_id"]
    n = draw(st.integers(0, 6))
    table = {}
    for name in names:
        fitting = cells_for(name).filter(no_surrogates)
        kind = draw(st.sampled_from(["fitting", "fitting", *sorted(column_types)]))
        values = fitting if kind == "fitting" else column_types[kind]
        table[name] = draw(st.lists(st.none() | values if draw(st.booleans()) else values,
                                    min_size=n, max_size=n))
    if draw(st.integers(0, 3)) == 0:
        message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]),
                                         "content": st.text(max_size=6).filter(no_surrogates)})
        table["messages"] = draw(st.lists(st.lists(message, max_size=3), min_size=n, max_size=n))
    return table


@FUZZ
@given(tables())
def test_parquet_reader(table):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = written(b"", "in.parquet")
    pq.write_table(pa.table(table), path)
    check_records(lambda: iter_records(path))


@FUZZ
@given(tables())
def test_dataframe_reader(table):
    import pandas as pd

    frame = pd.DataFrame(table)
    check_records(lambda: iter_records(frame), source_named=False)


@FUZZ
@given(tables())
def test_dataset_reader(table):
    import datasets
    import pyarrow as pa

    # datasets cannot itself hold some column names (control characters): not ours to test
    table = {name: values for name, values in table.items() if name.isprintable() and name.strip()}
    dataset = datasets.Dataset(pa.table(table))
    check_records(lambda: iter_records(dataset), source_named=False)


# ---------------------------------------------------------------------------- ConvoKit
@st.composite
def utterances(draw):
    keys = ["id", "conversation_id", "speaker", "text"] if draw(st.booleans()) else []
    keys += draw(st.lists(st.sampled_from(["id", "conversation_id", "root", "speaker", "user",
                                           "reply_to", "timestamp", "text", "meta"]),
                          max_size=8, unique=True))
    values = {"id": ids, "conversation_id": ids, "root": ids,
              "reply_to": ids, "speaker": roles, "user": roles,
              "text": texts,
              "timestamp": st.none() | st.integers(0, 5) | st.sampled_from(["2024-01-01", "x"]),
              "meta": st.fixed_dictionaries({}, optional={"role": role_names,
                                                          "agent_type": json_scalars}) | json_values}
    return {key: draw(values[key]) for key in keys}


@FUZZ
@given(st.lists(utterances().map(lambda u: json.dumps(u).encode()) | st.binary(max_size=20),
                max_size=8),
       st.none() | json_values | st.dictionaries(role_names, st.fixed_dictionaries(
           {"meta": st.fixed_dictionaries({"role": role_names})}), max_size=3))
def test_convokit_reader(lines, speakers):
    directory = written(b"\n".join(lines), "utterances.jsonl").parent
    if speakers is not None:
        (directory / "speakers.json").write_text(json.dumps(speakers))
    check_records(lambda: iter_records(directory))


# ------------------------------------------------------------------------ Python objects
turns = st.builds(Turn, role=roles, text=texts, timestamp=json_scalars,
                  agent_type=st.none() | st.sampled_from(["ai", "human", "robot"]),
                  index=st.integers(-2, 5))
transcripts = st.builds(Transcript, id=ids, turns=st.lists(turns | json_scalars, max_size=4).map(tuple),
                        agent_type=st.sampled_from(["ai", "unknown", "martian"]),
                        metadata=st.dictionaries(any_text, json_values, max_size=2) | json_scalars,
                        n_input_turns=st.integers(0, 9) | st.none())


@FUZZ
@given(st.lists(st.one_of(likely_transcripts(), likely_transcripts(), transcript_objects(),
                          transcripts, json_values), max_size=5))
def test_python_object_reader(items):
    check_records(lambda: iter_records(items))


@pytest.mark.parametrize("reader", ["jsonl", "csv", "parquet", "convokit"])
def test_fuzzing_reaches_valid_transcripts(reader, tmp_path):
    """The generators can make valid input, so the properties above are not only about errors."""
    rows = {"conversation_id": ["a", "a"], "role": ["user", "assistant"], "text": ["hi", "ok"]}
    if reader == "jsonl":
        path = tmp_path / "in.jsonl"
        path.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}))
    elif reader == "csv":
        path = tmp_path / "in.csv"
        path.write_text("conversation_id,role,text\na,user,hi\na,assistant,ok\n")
    elif reader == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "in.parquet"
        pq.write_table(pa.table(rows), path)
    else:
        path = tmp_path
        (path / "utterances.jsonl").write_text(json.dumps(
            {"id": "u1", "conversation_id": "a", "speaker": "user", "text": "hi"}))
    assert [r.id for r in iter_records(path)] == ["a"]

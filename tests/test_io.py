"""Readers: every input shape, every located error, streaming and the duplicate/contiguity rules."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qualaudit.errors import InputError
from qualaudit.io import ColumnMap, ReadProgress, iter_records, read_transcripts
from qualaudit.normalize import make_transcript
from qualaudit.schema import Transcript, Turn


def write_jsonl(path: Path, lines: list) -> Path:
    """Dicts are dumped as JSON; str and bytes lines are written as given."""
    with path.open("wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            handle.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def split(records) -> tuple[list[Transcript], list[InputError]]:
    records = list(records)
    assert all(isinstance(r, (Transcript, InputError)) for r in records)
    return ([r for r in records if isinstance(r, Transcript)],
            [r for r in records if isinstance(r, InputError)])


def turns_of(t: Transcript) -> list[tuple[str, str, int]]:
    return [(turn.role, turn.text, turn.index) for turn in t.turns]


def chat(tid: str, *texts: str) -> dict:
    roles = ["user", "assistant"]
    return {"id": tid, "messages": [{"role": roles[i % 2], "content": text}
                                    for i, text in enumerate(texts)]}


# ---- JSONL and dict shapes --------------------------------------------------------------------


def test_openai_jsonl_with_parts_metadata_and_agent_type(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [
        {"id": "c1", "agent_type": "bot", "channel": "chat", "language": "en",
         "metadata": {"team": "billing", "language": "de"}, "tags": ["x"],
         "messages": [
             {"role": "system", "content": "You are helpful."},
             {"role": "user", "content": [{"type": "text", "text": "My card"},
                                          {"type": "image_url", "image_url": {"url": "u"}},
                                          {"type": "text", "text": "was charged twice."}]},
             {"role": "assistant", "content": None},
             {"role": "assistant", "content": "I refunded it."},
         ]},
        "",
        {"id": 7, "messages": [{"role": "user", "content": "hi"}]},
    ])
    (first, second), errors = split(iter_records(path))
    assert errors == []
    assert first.id == "c1" and first.agent_type == "ai"
    assert turns_of(first) == [("system", "You are helpful.", 0),
                               ("customer", "My card\nwas charged twice.", 1),
                               ("agent", "I refunded it.", 3)]
    assert first.n_input_turns == 4
    # top-level scalars go to metadata; the explicit metadata object wins; lists are left out
    assert first.metadata == {"channel": "chat", "language": "de", "team": "billing"}
    assert (first.source, first.line) == (str(path), 1)
    assert second.id == "7" and second.line == 3 and second.agent_type == "unknown"


def test_turns_jsonl_with_aliases_timestamps_and_handover(tmp_path):
    path = write_jsonl(tmp_path / "t.json", [
        {"ticket_id": "T-1", "started_at": "2024-05-01", "turns": [
            {"speaker": "customer", "text": "Where is my parcel?", "timestamp": "2024-05-01T10:00"},
            {"sender": "agent", "utterance": "Checking.", "agent_type": "ai",
             "timestamp": "2024-05-01T10:01"},
            {"role": "agent", "message": "It ships today.", "agent_type": "human"},
        ]},
    ])
    (t,), errors = split(iter_records(path))
    assert errors == []
    assert t.id == "T-1" and t.agent_type == "mixed"
    assert turns_of(t) == [("customer", "Where is my parcel?", 0), ("agent", "Checking.", 1),
                           ("agent", "It ships today.", 2)]
    assert [turn.timestamp for turn in t.turns] == ["2024-05-01T10:00", "2024-05-01T10:01", None]
    assert [turn.agent_type for turn in t.turns] == [None, "ai", "human"]
    assert [turn.speaker for turn in t.turns] == ["customer", "agent", "agent"]
    # an explicit started_at wins; ended_at comes from the last turn's timestamp
    assert t.metadata == {"started_at": "2024-05-01", "ended_at": "2024-05-01T10:01"}


@pytest.mark.parametrize("line, field, reason", [
    ('{"id": "x", "messages": [', None, "not valid JSON"),
    ('[1, 2]', None, "expected a transcript object"),
    ('{"messages": []}', "id", "no transcript id"),
    ('{"id": "x"}', "messages", "found neither"),
    ('{"id": "x", "messages": [], "turns": []}', "messages", "found both"),
    ('{"id": "x", "turns": "hello"}', "turns", "expected a list of turns, found a string"),
    ('{"id": "x", "messages": [{"role": "user", "content": "a"}, "b"]}', "messages[1]",
     "expected a turn object"),
    ('{"id": "x", "messages": [{"content": "a"}]}', "messages[0].role", "expected a role name"),
    ('{"id": "x", "turns": [{"speaker": "user", "text": "a"}, {"speaker": "wizard", "text": "b"}]}',
     "turns[1].speaker", "unknown role 'wizard'"),
    ('{"id": "x", "turns": [{"role": "user", "text": 42}]}', "turns[0].text",
     "expected text to be a string, found int"),
    ('{"id": "x", "messages": [{"role": "user", "content": ["a"]}]}', "messages[0].content[0]",
     "expected a content part"),
    ('{"id": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}',
     "messages[0].content[0].text", "expected the text of a text part"),
    ('{"id": "x", "metadata": [1], "messages": [{"role": "user", "content": "a"}]}', "metadata",
     "expected metadata to be an object"),
    ('{"id": {"a": 1}, "messages": [{"role": "user", "content": "a"}]}', "id",
     "expected the id to be a string or a number"),
    ('{"id": "x", "agent_type": "robot", "messages": [{"role": "user", "content": "a"}]}',
     "agent_type", "unknown agent type"),
    ('{"id": "x", "messages": [{"role": "assistant", "content": "a", "agent_type": "alien"}]}',
     "messages[0].agent_type", "unknown agent type"),
])
def test_jsonl_errors_are_located_and_reading_goes_on(tmp_path, line, field, reason):
    path = write_jsonl(tmp_path / "x.jsonl", [chat("before", "hi"), line, chat("after", "yo")])
    transcripts, errors = split(iter_records(path))
    assert [t.id for t in transcripts] == ["before", "after"]
    (error,) = errors
    assert (error.source, error.line, error.field) == (str(path), 2, field)
    assert reason in error.reason
    if field not in (None, "id"):
        assert error.transcript_id == "x"


def test_invalid_json_names_the_parser_column(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", ['{"id": "a" "messages": []}'])
    (error,) = list(iter_records(path))
    assert error.reason == "not valid JSON: Expecting ',' delimiter at column 12"


def test_unknown_role_lists_accepted_roles(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "x", "turns": [{"role": "wizard", "text": "a"}]}])
    (error,) = list(iter_records(path))
    assert "accepted roles:" in error.reason and "customer" in error.reason and "agent" in error.reason
    assert "--role-map" in error.hint


def test_empty_turns_dropped_but_input_indices_kept(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "e", "messages": [
        {"role": "user", "content": "  \n\t "}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": ""}, {"role": "user", "content": "Thanks"}]}])
    (t,) = list(iter_records(path))
    assert turns_of(t) == [("agent", "Hello", 1), ("customer", "Thanks", 3)]
    assert t.n_input_turns == 4


def test_transcript_without_text_is_rejected_with_id_and_line(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        chat("ok", "hi"),
        {"id": "blank", "messages": [{"role": "user", "content": " "},
                                     {"role": "system", "content": "sys"}]},
        {"id": "none", "messages": []},
    ])
    transcripts, (blank, none) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["ok"]
    assert (blank.transcript_id, blank.line) == ("blank", 2) and "no text" in blank.reason
    assert (none.transcript_id, none.line) == ("none", 3) and "no turns" in none.reason


def test_one_sided_transcripts_are_accepted(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"id": "c", "messages": [{"role": "user", "content": "Anyone there?"}]},
        {"id": "a", "messages": [{"role": "assistant", "content": "Ticket closed."}]},
    ])
    customer_only, agent_only = list(iter_records(path))
    assert turns_of(customer_only) == [("customer", "Anyone there?", 0)]
    assert turns_of(agent_only) == [("agent", "Ticket closed.", 0)]


def test_invalid_utf8_in_jsonl_rejects_that_line_only(tmp_path):
    bad = b'{"id": "bad", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    path = write_jsonl(tmp_path / "x.jsonl", [chat("a", "hi"), bad, chat("b", "yo")])
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "b"]
    assert error.line == 2 and error.transcript_id == "bad"
    assert bad.index(b"\xe9") == 59
    assert "invalid UTF-8 at byte 60 of the line (0xe9)" in error.reason
    assert "UTF-8" in error.hint


def test_escaped_lone_surrogate_in_jsonl_text_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        '{"id": "s", "messages": [{"role": "user", "content": "ok"}, '
        '{"role": "assistant", "content": "bad \\udcff"}]}'])
    (error,) = list(iter_records(path))
    assert (error.field, error.transcript_id) == ("messages[1].content", "s")
    assert "invalid UTF-8" in error.reason


def test_utf8_bom_and_crlf_lines_are_read(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat("a", "hi")).encode() + b"\r\n")
    assert [t.id for t in iter_records(path)] == ["a"]


def test_duplicate_id_keeps_first_and_never_merges(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [chat("a", "first"), chat("b", "other"),
                                              chat("a", "second", "more")])
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "b"]
    assert turns_of(transcripts[0]) == [("customer", "first", 0)]
    assert (error.line, error.transcript_id, error.field) == (3, "a", "id")
    assert "duplicate id 'a', first seen at line 1" in error.reason


def test_id_of_a_rejected_transcript_still_counts_for_duplicates(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "messages": "nope"}, chat("a", "hi")])
    first, second = list(iter_records(path))
    assert isinstance(first, InputError) and first.field == "messages"
    assert isinstance(second, InputError) and "first seen at line 1" in second.reason


def test_json_array_file_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "all.json"
    path.write_text(json.dumps([chat("a", "hi")], indent=2))
    with pytest.raises(InputError, match="found a JSON array") as info:
        iter_records(path)
    assert "jq -c" in info.value.hint


@pytest.mark.parametrize("name, data, found, fix", [
    ("x.jsonl", None, "gzip-compressed data", "gunzip -c x.jsonl > transcripts.jsonl"),
    ("x.csv", None, "gzip-compressed data", "gunzip -c x.csv > transcripts.csv"),
    ("x.jsonl", b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256)), "a zip archive", "unzip x.jsonl"),
    ("x.tsv", b"PAR1\x15\x04" + bytes(range(256)) * 4, "a Parquet file", "--format parquet"),
    ("x.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "a PNG image", "transcript file"),
    ("x.csv", "chat_id,role,text\na,user,hi\n".encode("utf-16"), "UTF-16", "iconv -f UTF-16"),
    ("x.jsonl", bytes(range(256)) * 40, "binary data", "decompressed"),
])
def test_a_file_that_is_not_text_is_one_error_naming_what_it_is(tmp_path, name, data, fix, found):
    import gzip

    lines = "".join(json.dumps(chat(f"c{i}", "hi", "hello")) + "\n" for i in range(50))
    path = tmp_path / name
    path.write_bytes(gzip.compress(lines.encode()) if data is None else data)
    with pytest.raises(InputError) as info:
        iter_records(path)  # raised before the first record: one error, not one per line
    error = info.value
    assert error.source == str(path) and error.line is None
    assert f"found {found}" in error.reason and "text file" in error.reason
    assert fix in error.hint and "latin1" not in str(error)


def test_text_with_a_stray_nul_or_bad_byte_still_rejects_only_its_transcript(tmp_path):
    nul = b'{"id": "nul", "messages": [{"role": "user", "content": "a\x00b"}]}'
    bad = b'{"id": "bad", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    path = write_jsonl(tmp_path / "x.jsonl", [chat("a", "hi"), nul, bad, chat("b", "yo")])
    transcripts, errors = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "b"]
    assert [e.line for e in errors] == [2, 3]
    table = write_csv(tmp_path / "x.csv", b"chat_id,role,text\na,user,hi\nb,user,x\x00y\n")
    assert len(list(iter_records(table))) == 2  # read as text, row by row


def test_role_map_from_string_and_mapping(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "r", "turns": [
        {"role": "Visitor", "text": "hello"}, {"role": "operator", "text": "hi"},
        {"role": "guest", "text": "bye"}]}])
    (t,) = list(iter_records(path, role_map="customer=visitor,customer=guest"))
    assert [turn.role for turn in t.turns] == ["customer", "agent", "customer"]
    (t,) = list(iter_records(path, role_map={"customer": ["visitor", "guest"], "agent": "operator"}))
    assert [turn.role for turn in t.turns] == ["customer", "agent", "customer"]
    (error,) = list(iter_records(path))
    assert error.field == "turns[0].role" and "'Visitor'" in error.reason


def test_invalid_role_map_raises_before_reading(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [chat("a", "hi")])
    with pytest.raises(InputError) as info:
        iter_records(path, role_map="visitor")
    assert info.value.field == "role_map"
    with pytest.raises(InputError, match="not a role"):
        iter_records(path, role_map={"boss": "manager"})


def test_single_dict_transcript_list_and_generator_sources():
    given = make_transcript("t0", [{"role": "user", "text": "hi"}])
    assert list(iter_records(given)) == [given]
    (t,) = list(iter_records(chat("d", "hello")))
    assert (t.id, t.source, t.line) == ("d", "<dict>", 1)
    transcripts, (error,) = split(iter_records([given, chat("d", "x"), "not a transcript"]))
    assert [t.id for t in transcripts] == ["t0", "d"]
    assert (error.source, error.line) == ("<list>", 3) and "found a string" in error.reason
    transcripts = list(iter_records(chat(f"g{i}", "x") for i in range(3)))
    assert [(t.id, t.line) for t in transcripts] == [("g0", 1), ("g1", 2), ("g2", 3)]
    _, (dup,) = split(iter_records([given, chat("t0", "again")]))
    assert dup.line == 2 and "first seen at item 1" in dup.reason


def test_unsupported_source_type_raises():
    with pytest.raises(InputError, match="cannot read transcripts from a int"):
        iter_records(42)


def test_transcripts_passed_in_are_validated_like_any_input():
    hand_made = Transcript(id=" t1 ", turns=(
        Turn("customer", "  Hi\u200b   there "), Turn("assistant", "   "),  # type: ignore[arg-type]
        Turn("assistant", "Hello", agent_type="bot")),  # type: ignore[arg-type]
        metadata={"at": datetime(2024, 1, 1, 8)})
    (t,) = list(iter_records(hand_made))
    # roles normalised, the blank turn dropped, positions as indices (all Turns had index 0)
    assert (t.id, turns_of(t)) == ("t1", [("customer", "Hi there", 0), ("agent", "Hello", 2)])
    assert [turn.speaker for turn in t.turns] == ["customer", "assistant"]
    assert [turn.agent_type for turn in t.turns] == [None, "ai"]
    assert t.n_input_turns == 3 and t.metadata == {"at": "2024-01-01T08:00:00"}
    assert (t.source, t.line) == ("<Transcript>", 1)


def test_bad_transcripts_passed_in_are_located_errors():
    bad = [
        Transcript("a", (Turn("customer", "hi"), Turn("agent", "x", agent_type="robot"))),  # type: ignore[arg-type]
        Transcript("b", (Turn("customer", " \t "),)),
        Transcript("c", (Turn("customer", "hi", index=3), Turn("agent", "ok", index=1))),
        Transcript("d", (Turn("wizard", "hi"),)),  # type: ignore[arg-type]
        Transcript("e", (Turn("customer", "hi"),), agent_type="robot"),  # type: ignore[arg-type]
        Transcript("f", (Turn("system", "be nice"),)),
        Transcript("g", (Turn("customer", "hi"),), metadata={"x": {1, 2}}),
        Transcript("h", ({"role": "user", "text": "hi"},)),  # type: ignore[arg-type]
    ]
    transcripts, errors = split(iter_records(bad))
    assert transcripts == []
    assert [(e.source, e.line, e.transcript_id, e.field) for e in errors] == [
        ("<list>", 1, "a", "turns[1].agent_type"), ("<list>", 2, "b", None),
        ("<list>", 3, "c", "turns[1].index"), ("<list>", 4, "d", "turns[0].role"),
        ("<list>", 5, "e", "agent_type"), ("<list>", 6, "f", None), ("<list>", 7, "g", "metadata.x"),
        ("<list>", 8, "h", "turns[0]"),
    ]
    assert "no text" in errors[1].reason and "no customer or agent turn" in errors[5].reason


def test_transcripts_read_before_come_back_equal_keeping_their_origin(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"id": "a", "team": "blue", "metadata": {"n": 2}, "messages": [
            {"role": "system", "content": "sys"}, {"role": "user", "content": " "},
            {"role": "user", "content": "hi", "timestamp": "2024-01-01T10:00"},
            {"role": "assistant", "content": "bot", "agent_type": "ai"},
            {"role": "agent", "content": "human", "agent_type": "human"}]},
        chat("b", "one", "two"),
    ])
    first = list(read_transcripts(path))
    for source in (first, iter(first), first[0]):
        again = list(iter_records(source))
        assert again == first[:len(again)]
        assert [(t.source, t.line) for t in again] == [(str(path), 1), (str(path), 2)][:len(again)]
    assert [t.index for t in first[0].turns] == [0, 2, 3, 4] and first[0].n_input_turns == 5


def test_explicit_metadata_becomes_plain_json_in_every_shape(tmp_path):
    given = {"id": "d", "metadata": {"opened": datetime(2024, 3, 1, 9), "n": np.int64(2),
                                     "score": float("nan"), "tags": np.array(["x", "y"])},
             "messages": [{"role": "user", "content": "hi"}]}
    (t,) = list(iter_records(given))
    assert t.metadata == {"opened": "2024-03-01T09:00:00", "n": 2, "score": None,
                          "tags": ["x", "y"]}
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{
        "id": "p", "messages": [{"role": "user", "content": "hi"}],
        "opened": datetime(2024, 3, 1, 9),
        "metadata": {"closed": datetime(2024, 3, 2, 9), "team": "blue"}}]), path)
    for source in (path, pd.read_parquet(path), datasets.Dataset.from_parquet(str(path))):
        (t,) = list(iter_records(source))
        assert t.metadata == {"opened": "2024-03-01T09:00:00",
                              "closed": "2024-03-02T09:00:00", "team": "blue"}
        json.dumps(dict(t.metadata), allow_nan=False)
    _, (error,) = split(iter_records([chat("ok", "hi"), {**chat("bad", "hi"), "metadata": {
        "when": timedelta(hours=1)}}]))
    assert (error.line, error.transcript_id, error.field) == (2, "bad", "metadata.when")
    assert "found timedelta" in error.reason


# ---- paths and formats ------------------------------------------------------------------------


def test_missing_file_unknown_extension_and_format_override(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        iter_records(tmp_path / "nope.jsonl")
    path = write_jsonl(tmp_path / "chats.txt", [chat("a", "hi")])
    with pytest.raises(InputError, match="cannot tell the format") as info:
        iter_records(path)
    assert "--format" in info.value.hint
    assert [t.id for t in iter_records(path, format="jsonl")] == ["a"]
    with pytest.raises(InputError, match="unknown format 'xml'"):
        iter_records(path, format="xml")
    with pytest.raises(InputError, match="without utterances.jsonl"):
        iter_records(tmp_path)


# ---- long tables ------------------------------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_csv_detected_columns_numeric_order_and_metadata(tmp_path):
    path = write_csv(tmp_path / "chats.csv", (
        "Conversation_ID,Speaker,Message,turn_index,Lang,team,extra\n"
        "c1,agent,Second,2,en,billing,x\n"
        "c1,customer,First,1,en,billing,x\n"
        "c1,agent,Tenth,10,en,billing,x\n"
        "c2,user,NA,1,fr,,\n"
        "c2,bot,,2,fr,,\n"
    ))
    (c1, c2), errors = split(iter_records(path))
    assert errors == []
    assert c1.id == "c1" and c1.line == 1 and c2.line == 4
    assert turns_of(c1) == [("customer", "First", 0), ("agent", "Second", 1), ("agent", "Tenth", 2)]
    assert c1.metadata == {"language": "en", "team": "billing"}
    # "NA" is text, not a missing value; an empty cell is an empty turn
    assert turns_of(c2) == [("customer", "NA", 0)] and c2.n_input_turns == 2
    assert c2.metadata == {"language": "fr"}
    assert all(turn.timestamp is None for turn in c1.turns)


def test_csv_explicit_column_map_and_timestamp_order(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "ticket,who,body_plain,sent,handled_by\n"
        "t1,agent,Later,2024-03-01T09:01:00Z,human\n"
        "t1,customer,Earlier,2024-03-01T10:05:00+02:00,\n"
    ))
    columns = ColumnMap(id="TICKET", role="who", text="body_plain", order="sent")
    (t,) = list(iter_records(path, columns=columns))
    # 10:05+02:00 (= 08:05Z) is before 09:01Z, although not as text; handled_by is detected
    assert turns_of(t) == [("customer", "Earlier", 0), ("agent", "Later", 1)]
    assert t.agent_type == "human"
    assert [turn.timestamp for turn in t.turns] == [None, None]  # "sent" is not timestamp-like


def test_timestamp_like_order_column_fills_turn_timestamps(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,role,text,created_at\n"
        "a,agent,Reply,01/02/2024 10:00\n"
        "a,customer,Question,01/02/2024 09:00\n"
    ))
    (t,) = list(iter_records(path))
    assert turns_of(t) == [("customer", "Question", 0), ("agent", "Reply", 1)]
    assert [turn.timestamp for turn in t.turns] == ["01/02/2024 09:00", "01/02/2024 10:00"]


def test_turn_index_orders_and_timestamp_column_still_fills_timestamps(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "session_id,role,text,seq,timestamp\n"
        "a,agent,Reply,2,t2\n"
        "a,customer,Question,1,t1\n"
    ))
    (t,) = list(iter_records(path))
    assert [(turn.text, turn.timestamp) for turn in t.turns] == [("Question", "t1"), ("Reply", "t2")]


def test_conversation_id_wins_over_bare_id(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "id,conversation_id,role,text\nm1,c1,user,hi\nm2,c1,agent,hello\n"))
    (t,) = list(iter_records(path))
    assert t.id == "c1" and len(t.turns) == 2


def test_ambiguous_columns_raise_listing_them(tmp_path):
    path = write_csv(tmp_path / "x.csv", "chat_id,role,text,Message\na,user,hi,hi\n")
    with pytest.raises(InputError) as info:
        iter_records(path)
    assert "ambiguous text column" in info.value.reason
    assert "['text', 'Message']" in info.value.reason
    assert "--text-column NAME" in info.value.hint and "ColumnMap(text=NAME)" in info.value.hint
    (t,) = list(iter_records(path, columns=ColumnMap(text="Message")))
    assert t.turns[0].text == "hi"


def test_missing_columns_raise_listing_the_columns_found(tmp_path):
    path = write_csv(tmp_path / "x.csv", "chat_id,who,text\na,user,hi\n")
    with pytest.raises(InputError) as info:
        iter_records(path)
    assert "no role column" in info.value.reason
    assert "columns found: ['chat_id', 'who', 'text']" in info.value.reason
    assert "--role-column NAME" in info.value.hint
    with pytest.raises(InputError, match=r"column 'speaker' \(ColumnMap.role\) not found; "
                                         r"columns found: \['chat_id', 'who', 'text'\]"):
        iter_records(path, columns=ColumnMap(role="speaker"))


def test_every_unresolved_column_is_listed_in_one_error(tmp_path):
    path = write_csv(tmp_path / "x.csv", "ticket,who,words,Message,message\na,user,hi,x,y\n")
    with pytest.raises(InputError) as info:
        iter_records(path)
    reason, hint = info.value.reason, info.value.hint
    assert reason.startswith("3 columns cannot be told: no id column; expected one of "
                             "['conversation_id', ")
    assert "no role column; expected one of ['role', " in reason
    assert "ambiguous text column: ['Message', 'message'] could each be it" in reason
    assert reason.endswith("columns found: ['ticket', 'who', 'words', 'Message', 'message']")
    assert info.value.source == str(path)
    for flag in ("--id-column NAME (ColumnMap(id=NAME))", "--role-column NAME",
                 "--text-column NAME"):
        assert flag in hint
    with pytest.raises(InputError) as info:  # mapped names that are not there count too
        iter_records(path, columns=ColumnMap(id="ticket", text="nope", order="seq",
                                             agent_type="MESSAGE"))
    reason, hint = info.value.reason, info.value.hint
    assert "4 columns cannot be told" in reason and "no role column" in reason
    assert "column 'nope' (ColumnMap.text) not found" in reason
    assert "column 'seq' (ColumnMap.order) not found" in reason
    assert "column 'MESSAGE' (ColumnMap.agent_type) matches ['Message', 'message']" in reason
    assert "--id-column" not in hint and "--order-column" in hint and "--agent-type-column" in hint
    (t,) = list(iter_records(path, columns=ColumnMap(id="ticket", role="who", text="words")))
    assert (t.id, t.turns[0].text) == ("a", "hi")


def test_non_contiguous_ids_in_a_file_are_rejected_not_merged(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,role,text\na,user,one\nb,user,two\na,agent,three\n"))
    transcripts, (error,) = split(iter_records(path))
    assert [(t.id, turns_of(t)) for t in transcripts] == [
        ("a", [("customer", "one", 0)]), ("b", [("customer", "two", 0)])]
    assert (error.line, error.transcript_id, error.field) == (3, "a", "chat_id")
    assert "first seen at row 1" in error.reason and "sort the table by the id column" in error.hint


def test_bad_row_rejects_its_transcript_naming_row_and_column(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,from,text,agent_type\n"
        "a,user,hi,\n"
        "b,user,hello,\n"
        "b,wizard,abracadabra,\n"
        "c,user,ok,\n"
        "c,agent,sure,robot\n"
    ))
    transcripts, (wizard, robot) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a"]
    assert (wizard.line, wizard.transcript_id, wizard.field) == (3, "b", "from")
    assert (robot.line, robot.transcript_id, robot.field) == (5, "c", "agent_type")


def test_missing_id_in_a_table_row(tmp_path):
    path = write_csv(tmp_path / "x.csv", "chat_id,role,text\n,user,hi\na,user,ok\n")
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a"]
    assert (error.line, error.field) == (1, "chat_id")


def test_invalid_utf8_in_csv_rejects_only_that_transcript(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        b"chat_id,role,text\n"
        b"a,user,fine\n"
        b"b,user,ok\n"
        b"b,agent,caf\xe9 au lait\n"
        b"c,user,also fine\n"
    ))
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "c"]
    assert (error.line, error.transcript_id, error.field) == (3, "b", "text")
    assert "invalid UTF-8" in error.reason and "UTF-8" in error.hint
    id_path = write_csv(tmp_path / "y.csv", b"chat_id,role,text\nb\xff,user,hi\nc,user,ok\n")
    transcripts, (error,) = split(iter_records(id_path))
    assert [t.id for t in transcripts] == ["c"] and (error.line, error.field) == (1, "chat_id")


def test_invalid_utf8_in_csv_timestamp_and_metadata_cells(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        b"chat_id,role,text,sent_at,team\n"
        b"a,user,hi,t1,\xe9quipe\n"
        b"b,user,ok,t1,x\n"
        b"b,agent,ok,t\xff2,x\n"
    ))
    a, b = list(iter_records(path))
    assert (a.line, a.transcript_id, a.field) == (1, "a", "metadata.team")
    assert (b.line, b.transcript_id, b.field) == (3, "b", "sent_at")
    assert "invalid UTF-8" in b.reason


def test_csv_quoted_newlines_bom_and_tsv(tmp_path):
    path = write_csv(tmp_path / "x.csv", '\ufeffchat_id,role,text\na,user,"line one\nline two"\n')
    (t,) = list(iter_records(path))
    assert t.turns[0].text == "line one\nline two"
    tsv = write_csv(tmp_path / "x.tsv", "chat_id\trole\ttext\na\tuser\thi, there\n")
    (t,) = list(iter_records(tsv))
    assert t.turns[0].text == "hi, there"


def test_malformed_csv_row_rejects_its_transcript_and_reading_goes_on(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,role,text\n"
        'a,user,"two\nlines"\n'          # data row 1, physical lines 2-3
        "b,user,fine\n"                   # row 2, line 4
        "\n"                              # a blank line is not a row
        "b,agent,sure, no problem\n"      # row 3, line 6: an unquoted comma
        "b,user,thanks\n"                 # row 4: still b, rejected with it
        "c,user,ok\n"                     # row 5
    ))
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "c"]
    assert (error.line, error.transcript_id, error.field) == (3, "b", None)
    assert "malformed data row 3 (physical line 6 of the file)" in error.reason
    assert "expected 3 fields as in the header, found 4" in error.reason
    assert "Quote every field" in error.hint
    assert transcripts[1].line == 5
    _, (_, dup) = split(iter_records(write_csv(tmp_path / "y.csv", (
        "chat_id,role,text\nb,user,a,b\nc,user,ok\nb,user,late\n"))))
    assert "duplicate id 'b', first seen at row 1" in dup.reason


def test_malformed_csv_rows_anywhere_keep_every_good_row(tmp_path):
    rows = [f"t{i},user,hello {i}" for i in range(25_000)]
    rows[3] = "t3,user,too,many,fields"
    rows[20_000] = "t20000,user"  # too few fields, in the second 10k-row chunk
    path = write_csv(tmp_path / "big.csv", "chat_id,role,text\n" + "\n".join(rows) + "\n")
    transcripts, errors = split(iter_records(path))
    assert len(transcripts) == 24_998
    assert [(e.transcript_id, e.line) for e in errors] == [("t3", 4), ("t20000", 20_001)]
    assert "physical line 20002 of the file): expected 3 fields as in the header, found 2" in (
        errors[1].reason)


def test_csv_row_the_parser_cannot_read_rejects_its_transcript(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,role,text\na,user,hi\nb,user,fine\n"
        f"b,agent,{'x' * 200_000}\n"
        'b,user,"quoted" then not\n'
        "c,user,ok\n"))
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a", "c"]
    assert (error.line, error.transcript_id) == (3, "b")  # the first of b's two bad rows
    assert "physical line 4" in error.reason and "field larger than field limit" in error.reason
    assert "131072 characters" in error.hint


def test_csv_unclosed_quote_is_a_row_error_not_a_swallowed_file(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        'chat_id,role,text\na,user,hi\nb,user,"never closed\nc,user,ok\nd,user,yo\n'))
    transcripts, (error,) = split(iter_records(path))
    assert [t.id for t in transcripts] == ["a"]
    assert error.transcript_id == "b" and "physical lines 3-5" in error.reason
    assert "unexpected end of data" in error.reason
    lone = write_csv(tmp_path / "y.csv", 'role,chat_id,text\nuser,a,hi\n"x\n')
    _, (error,) = split(iter_records(lone))
    assert error.transcript_id is None and "its id cannot be read" in error.reason


def test_empty_csv_and_unreadable_header_raise(tmp_path):
    with pytest.raises(InputError, match="empty file"):
        iter_records(write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(InputError, match="empty file"):
        iter_records(write_csv(tmp_path / "blank.csv", "\n\n"))
    (t,) = list(iter_records(write_csv(tmp_path / "lead.csv", "\nchat_id,role,text\na,user,hi\n")))
    assert (t.id, t.line) == ("a", 1)


def test_table_errors_name_the_users_column_and_row_by_turn_and_part(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,sender,body,seq\n"
        "a,user,hi,1\n"
        "b,agent,sure,2\n"
        "b,wizard,abracadabra,1\n"
    ))
    _, (error,) = split(iter_records(path))
    # ordered by seq, the wizard row (data row 3) is b's turn 0
    assert (error.line, error.field, error.turn, error.part) == (3, "sender", 0, "role")


def test_several_candidate_columns_log_the_one_used(tmp_path, caplog):
    path = write_csv(tmp_path / "x.csv", (
        "chat_id,role,text,seq,timestamp,handled_by,agent_type\n"
        "a,user,SECRETWORD,2,t2,,\n"
        "a,agent,ok,1,t1,human,ai\n"
    ))
    with caplog.at_level(logging.INFO, logger="qualaudit.io"):
        (t,) = list(iter_records(path))
    assert turns_of(t) == [("agent", "ok", 0), ("customer", "SECRETWORD", 1)]
    assert t.turns[0].agent_type == "ai"  # agent_type has priority over handled_by
    messages = [r.getMessage() for r in caplog.records if r.name == "qualaudit.io"]
    assert len(messages) == 2 and all(r.levelno == logging.INFO for r in caplog.records)
    assert "'seq' as the order column; also found ['timestamp']" in messages[0]
    assert "'agent_type' as the agent_type column; also found ['handled_by']" in messages[1]
    assert "--order-column NAME" in messages[0] and "SECRETWORD" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qualaudit.io"):
        list(iter_records(path, columns=ColumnMap(order="timestamp", agent_type="handled_by")))
    assert caplog.records == []


def test_missing_ids_are_the_same_for_grouping_and_validation():
    frame = pd.DataFrame({
        "chat_id": pd.to_datetime(["2024-01-01", None, "2024-01-01"]),
        "role": ["user", "user", "agent"], "text": ["a", "orphan", "b"]})
    transcripts, (error,) = split(iter_records(frame))
    assert [(t.id, len(t.turns)) for t in transcripts] == [("2024-01-01 00:00:00", 2)]
    assert (error.line, error.field) == (2, "chat_id") and "missing transcript id" in error.reason


def test_invalid_utf8_has_one_message_and_hint_wherever_it_is(tmp_path):
    path = write_csv(tmp_path / "x.csv", (
        b"chat_id,role,text,team\n"
        b"\xffa,user,hi,x\n"
        b"b,user,caf\xe9,x\n"
        b"c,user,ok,\xe9quipe\n"
    ))
    errors = list(iter_records(path))
    assert [e.field for e in errors] == ["chat_id", "text", "metadata.team"]
    assert [e.reason for e in errors] == [
        "invalid UTF-8 (or a lone surrogate) at character 0",
        "invalid UTF-8 (or a lone surrogate) at character 3",
        "invalid UTF-8 (or a lone surrogate) at character 0"]
    assert len({e.hint for e in errors}) == 1 and "iconv" in errors[0].hint


def test_parquet_long_table_with_datetime_order(tmp_path):
    path = tmp_path / "x.parquet"
    table = pa.table({
        "conversation_id": [5, 5, 6],
        "author_role": ["assistant", "user", "user"],
        "content": ["Reply", "Question", "Solo"],
        "sent_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 09:00", "2024-01-02 00:00"]),
        "channel": ["email", "email", None],
    })
    pq.write_table(table, path)
    (a, b), errors = split(iter_records(path))
    assert errors == []
    assert (a.id, a.line, b.id, b.line) == ("5", 1, "6", 3)
    assert turns_of(a) == [("customer", "Question", 0), ("agent", "Reply", 1)]
    assert [turn.timestamp for turn in a.turns] == ["2024-01-01T09:00:00", "2024-01-01T10:00:00"]
    assert a.metadata == {"channel": "email", "started_at": "2024-01-01T09:00:00",
                          "ended_at": "2024-01-01T10:00:00"}
    assert set(b.metadata) == {"started_at", "ended_at"}


def test_parquet_with_a_messages_column_is_one_transcript_per_row(tmp_path):
    path = tmp_path / "x.pq"
    pq.write_table(pa.Table.from_pylist([chat("a", "hi", "hello"), chat("b", "yo")]), path)
    transcripts = list(iter_records(path))
    assert [(t.id, t.line) for t in transcripts] == [("a", 1), ("b", 2)]
    assert turns_of(transcripts[0]) == [("customer", "hi", 0), ("agent", "hello", 1)]


def test_not_a_parquet_file_raises(tmp_path):
    path = write_csv(tmp_path / "x.parquet", "chat_id,role,text\n")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        iter_records(path)


def test_dataframe_groups_non_contiguous_rows_in_order_of_first_appearance():
    frame = pd.DataFrame({
        "dialog_id": [2, 1, 2, 1, None],
        "participant": ["customer", "customer", "agent", "agent", "customer"],
        "utterance": ["b1", "a1", "b2", "a2", "orphan"],
        "position": [0, 0, 1, 1, 0],
        "queue": ["q2", "q1", "q2", "q1", None],
    })
    transcripts, (error,) = split(iter_records(frame))
    assert [(t.id, t.line, t.source) for t in transcripts] == [("2", 1, "<DataFrame>"),
                                                               ("1", 2, "<DataFrame>")]
    assert turns_of(transcripts[0]) == [("customer", "b1", 0), ("agent", "b2", 1)]
    assert transcripts[0].metadata == {"queue": "q2"}
    assert (error.line, error.field) == (5, "dialog_id") and "missing transcript id" in error.reason


def test_dataframe_with_messages_column():
    frame = pd.DataFrame([chat("a", "hi"), chat("b", "yo")])
    frame["team"] = ["t1", None]
    a, b = list(iter_records(frame))
    assert (a.id, a.metadata, b.id, b.metadata) == ("a", {"team": "t1"}, "b", {})


def test_dataframe_read_from_parquet_with_messages_arrays(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([chat("a", "hi", "hello")]), path)
    frame = pd.read_parquet(path)
    assert not isinstance(frame["messages"][0], list)  # pandas gives a numpy array here
    (t,) = list(iter_records(frame))
    assert turns_of(t) == [("customer", "hi", 0), ("agent", "hello", 1)]


def test_dataset_dict_is_refused_with_a_hint():
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list([chat("a", "hi")])})
    with pytest.raises(InputError, match=r"splits \['train'\]") as info:
        iter_records(splits)
    assert "dataset['train']" in info.value.hint


def test_datasets_dataset_both_shapes():
    rows = datasets.Dataset.from_list([chat("a", "hi", "hello"), chat("b", "yo")])
    assert [(t.id, len(t.turns)) for t in iter_records(rows)] == [("a", 2), ("b", 1)]
    table = datasets.Dataset.from_dict({
        "thread_id": ["x", "x", "y", "x"], "sender": ["user", "agent", "user", "user"],
        "body": ["q", "a", "solo", "late"]})
    transcripts, (error,) = split(iter_records(table))
    assert [(t.id, turns_of(t)) for t in transcripts] == [
        ("x", [("customer", "q", 0), ("agent", "a", 1)]), ("y", [("customer", "solo", 0)])]
    assert (error.source, error.line, error.transcript_id) == ("<Dataset>", 4, "x")
    assert "first seen at row 1" in error.reason


# ---- ConvoKit ---------------------------------------------------------------------------------


def utterance(uid, speaker, conv, text, ts, meta=None):
    return {"id": uid, "speaker": speaker, "conversation_id": conv, "reply_to": None,
            "timestamp": ts, "text": text, "meta": meta or {}}


def test_convokit_directory_with_speakers_json(tmp_path):
    write_jsonl(tmp_path / "utterances.jsonl", [
        utterance("u2", "bob", "c1", "Fixed it.", 20),
        utterance("u1", "ann", "c1", "Broken.", 10),
        utterance("u3", "ann", "c2", "Hello?", 5, {"role": "customer"}),
        utterance("u4", "zed", "c2", "Hi!", 6, {"role": "agent", "agent_type": "bot"}),
    ])
    (tmp_path / "speakers.json").write_text(json.dumps({
        "ann": {"meta": {"role": "customer"}}, "bob": {"meta": {"type": "agent"}}}))
    (c1, c2), errors = split(iter_records(tmp_path))
    assert errors == []
    assert (c1.id, c1.line, c1.source) == ("c1", 1, str(tmp_path / "utterances.jsonl"))
    assert turns_of(c1) == [("customer", "Broken.", 0), ("agent", "Fixed it.", 1)]
    assert turns_of(c2) == [("customer", "Hello?", 0), ("agent", "Hi!", 1)]
    assert c2.agent_type == "ai" and c2.line == 3


def test_convokit_file_without_speakers_json_uses_speaker_ids(tmp_path):
    path = write_jsonl(tmp_path / "utterances.jsonl", [
        utterance("u1", "customer", "c1", "Help", 1),
        utterance("u2", "helpdesk", "c1", "Sure", 2),
        utterance("u3", "customer", "c2", "Hi", 1),
        utterance("u4", "wizard", "c2", "Boo", 2),
        '{"broken',
        utterance("u5", "customer", "c1", "Again", 3),
        '{"id": "u6", "text": "no conversation"}',
    ])
    transcripts, (wizard, broken, orphan) = split(iter_records(path))
    # c1's utterances need not be contiguous: line 6 joins lines 1-2
    assert [(t.id, t.line, turns_of(t)) for t in transcripts] == [
        ("c1", 1, [("customer", "Help", 0), ("agent", "Sure", 1), ("customer", "Again", 2)])]
    assert (wizard.line, wizard.field, wizard.transcript_id) == (4, "speaker", "c2")
    assert broken.line == 5 and "not valid JSON" in broken.reason
    assert (orphan.line, orphan.field) == (7, "conversation_id")


def reply(uid, speaker, conv, text, reply_to, ts=None):
    return {**utterance(uid, speaker, conv, text, ts), "reply_to": reply_to}


def test_convokit_orders_by_reply_to_unless_every_utterance_has_a_timestamp(tmp_path):
    path = write_jsonl(tmp_path / "utterances.jsonl", [
        reply("u1", "customer", "c1", "Broken.", None, ts=10),
        reply("v1", "customer", "c2", "Hello?", None, ts=5),
        reply("u3", "customer", "c1", "Thanks!", "u2"),          # no timestamp: c1 by reply_to
        reply("v2", "agent", "c2", "Hi!", "v1", ts=4),           # timestamps win over reply_to
        reply("u2", "agent", "c1", "Fixed it.", "u1", ts=30),
        reply("u4", "agent", "c1", "Anything else?", "u1", ts=5),
        reply("w1", "customer", "c3", "one", "w2"),              # a reply cycle goes last
        reply("w2", "agent", "c3", "two", "w1"),
        reply("w0", "customer", "c3", "zero", None),
    ])
    c1, c2, c3 = list(iter_records(path))
    # u2 and u4 both reply to u1; u3 replies to u2 and is earlier in the file than u4
    assert [turn.text for turn in c1.turns] == ["Broken.", "Fixed it.", "Thanks!", "Anything else?"]
    assert [turn.text for turn in c2.turns] == ["Hi!", "Hello?"]
    assert [turn.text for turn in c3.turns] == ["zero", "one", "two"]
    assert [(t.id, t.line) for t in (c1, c2, c3)] == [("c1", 1), ("c2", 2), ("c3", 7)]


def test_convokit_lines_are_physical_and_a_bad_line_rejects_its_conversation(tmp_path):
    path = tmp_path / "utterances.jsonl"
    lines = [json.dumps(utterance("u1", "customer", "c1", "Hi", 1)).encode(),
             json.dumps(utterance("v1", "customer", "c2", "Hello", 1)).encode(),
             b"",
             json.dumps(utterance("u2", "wizard", "c1", "Boo", 2)).encode(),
             b'{"id": "v2", "conversation_id": "c2", "speaker": "agent", "text": "caf\xe9"}',
             json.dumps(utterance("x1", "customer", "c3", "Fine", 1)).encode()]
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    records = list(iter_records(path))
    wizard, bad_utf8, c3 = records
    assert (wizard.line, wizard.transcript_id, wizard.field) == (4, "c1", "speaker")
    assert (bad_utf8.line, bad_utf8.transcript_id) == (5, "c2") and "invalid UTF-8" in bad_utf8.reason
    assert (c3.id, c3.line, turns_of(c3)) == ("c3", 6, [("customer", "Fine", 0)])


# ---- read_transcripts and streaming -----------------------------------------------------------


def test_read_transcripts_raise_and_skip_without_logging_text(tmp_path, caplog):
    path = write_jsonl(tmp_path / "x.jsonl", [
        chat("a", "hi"),
        {"id": "bad", "turns": [{"role": "user", "text": "SECRETWORD here"},
                                {"role": "wizard", "text": "SECRETWORD again"}]},
        chat("c", "yo"),
    ])
    with pytest.raises(InputError) as info:
        list(read_transcripts(path))
    assert (info.value.line, info.value.field) == (2, "turns[1].role")
    with caplog.at_level(logging.WARNING, logger="qualaudit.io"):
        assert [t.id for t in read_transcripts(path, on_error="skip")] == ["a", "c"]
    (record,) = caplog.records
    assert record.name == "qualaudit.io" and "'bad'" in record.getMessage()
    assert "SECRETWORD" not in caplog.text
    with pytest.raises(ValueError, match="on_error"):
        read_transcripts(path, on_error="ignore")  # type: ignore[arg-type]


def test_jsonl_streams_first_transcript_before_a_later_bad_line(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [chat("a", "hi"), "{not json"])
    records = iter_records(path)
    assert next(records).id == "a"
    stream = read_transcripts(path)
    assert next(stream).id == "a"
    with pytest.raises(InputError, match="not valid JSON"):
        next(stream)


def test_generator_source_is_consumed_lazily():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield chat(f"t{i}", "hi")

    records = iter_records(source())
    assert pulled == []
    assert next(records).id == "t0"
    assert pulled == [0]


# ---- how far a file has been read ---------------------------------------------------------------


def read_with_progress(source, **kwargs):
    """Every record, with ReadProgress.bytes_read as each one came out, and the progress."""
    progress = ReadProgress()
    seen = [(record, progress.bytes_read) for record in iter_records(source, progress=progress,
                                                                     **kwargs)]
    return seen, progress


def test_jsonl_progress_counts_the_bytes_of_the_lines_read(tmp_path):
    path = tmp_path / "x.jsonl"
    lines = [json.dumps(chat("a", "hi")).encode(), b"", b"{broken \xe9",
             json.dumps(chat("b", "caf\u00e9 " * 50)).encode()]
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n\n")
    seen, progress = read_with_progress(path)
    size = path.stat().st_size
    assert progress.total_bytes == size and progress.bytes_read == size
    assert [at for _, at in seen] == [3 + len(lines[0]) + 2,
                                      3 + sum(len(line) + 2 for line in lines[:3]),
                                      size - 1]  # the last blank line is read after "b"


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_progress_counts_bytes_with_bom_crlf_quotes_and_bad_bytes(tmp_path, sep):
    rows = [["chat_id", "role", "text"], ["a", "user", "multi\r\nline, \"quoted\""],
            ["a", "agent", "caf\u00e9"], ["b", "user", "Q"], ["b", "user", "Q", "extra"],
            ["c", "user", "ok"]]
    import csv
    import io

    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=sep).writerows(rows)
    data = b"\xef\xbb\xbf" + buffer.getvalue().encode().replace(b"Q", b"\xff") + b"\r\n"
    path = write_csv(tmp_path / ("x.csv" if sep == "," else "x.tsv"), data)
    seen, progress = read_with_progress(path)
    assert [r.transcript_id if isinstance(r, InputError) else r.id for r, _ in seen] == ["a", "b", "c"]
    assert progress.bytes_read == progress.total_bytes == len(data)
    first = seen[0][1]  # "a" ends where the first "b" row starts, which was read to find that
    assert data.index(b"\r\nb") < first < data.index(b"\r\nc")


def test_parquet_and_convokit_progress_reach_the_file_size(tmp_path, monkeypatch):
    import qualaudit.io.tables as tables

    monkeypatch.setattr(tables, "_CHUNK_ROWS", 2)  # several batches
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"chat_id": ["a", "a", "b", "c", "d", "e"], "role": ["user"] * 6,
                             "text": ["hi"] * 6}), path)
    seen, progress = read_with_progress(path)
    size = path.stat().st_size
    assert [at for _, at in seen] == [size * 4 // 6, size * 4 // 6, size * 6 // 6, size * 6 // 6,
                                      size]
    assert progress.bytes_read == progress.total_bytes == size
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "utterances.jsonl", [utterance("u1", "customer", "c1", "Help", 1), "",
                                              utterance("u2", "agent", "c2", "Sure", 2)])
    seen, progress = read_with_progress(corpus)
    assert 0 < seen[0][1] < progress.total_bytes == (corpus / "utterances.jsonl").stat().st_size
    assert progress.bytes_read == progress.total_bytes


def test_sources_that_are_not_files_report_no_size():
    frame = pd.DataFrame({"chat_id": ["a"], "role": ["user"], "text": ["hi"]})
    for source in (frame, [chat("a", "hi")]):
        seen, progress = read_with_progress(source)
        assert len(seen) == 1 and (progress.bytes_read, progress.total_bytes) == (0, None)

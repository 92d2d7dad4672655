"""score_to_file: resuming, rejected rows (errors file, skip or fail), accounting, redaction."""

import json
import logging
import warnings

import pytest

from conftest import conversation, make_tiny_model
from qualaudit.errors import InputError, OutputError, QualauditError, RejectedRowError, UsageError
from qualaudit.pipeline import score_to_file
from qualaudit.scorer import Auditor


@pytest.fixture
def auditor(tiny_model):
    return Auditor(tiny_model, device="cpu", chunk_turns=4)


def write_jsonl(path, items):
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n"
                            for item in items))
    return path


def ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def many(n, start=0):
    return [conversation(f"c{i}", ("user", "my order"), ("assistant", "sorry about that"))
            for i in range(start, start + n)]


def test_resume_scores_only_what_is_missing(auditor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", many(10))
    out = tmp_path / "out.jsonl"
    write_jsonl(tmp_path / "first.jsonl", many(4))
    first = score_to_file(tmp_path / "first.jsonl", out, auditor)
    assert (first.scored, first.resumed) == (4, 0)
    with out.open("ab") as handle:  # a kill in the middle of the next row
        handle.write(b'{"id": "c4", "agent_type": "ai", "resol')
    summary = score_to_file(source, out, auditor, resume=True)
    assert (summary.read, summary.scored, summary.resumed, summary.rejected) == (10, 6, 4, 0)
    assert ids(out) == [f"c{i}" for i in range(10)]
    again = score_to_file(source, out, auditor, resume=True)
    assert (again.scored, again.resumed) == (0, 10) and ids(out) == [f"c{i}" for i in range(10)]


def test_without_resume_the_output_is_written_afresh(auditor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", many(3))
    out = write_jsonl(tmp_path / "out.jsonl", ['{"id": "old", "model": {}}'])
    score_to_file(source, out, auditor)
    assert ids(out) == ["c0", "c1", "c2"]


def test_resume_refuses_rows_of_another_model(auditor, tiny_encoder_dir, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", many(6))
    out = tmp_path / "out.jsonl"
    write_jsonl(tmp_path / "first.jsonl", many(2))
    score_to_file(tmp_path / "first.jsonl", out, auditor)
    before = out.read_bytes()
    other = Auditor(make_tiny_model(tiny_encoder_dir, seed=5), device="cpu")
    with pytest.raises(UsageError, match="written by model .*allow-mixed-models"):
        score_to_file(source, out, other, resume=True)
    assert out.read_bytes() == before
    with pytest.raises(UsageError, match="without --per-turn"):
        score_to_file(source, out, auditor, resume=True, per_turn=True)
    assert out.read_bytes() == before
    summary = score_to_file(source, out, other, resume=True, allow_mixed_models=True)
    assert (summary.scored, summary.resumed) == (4, 2) and len(ids(out)) == 6


def test_rejected_rows_go_to_the_errors_file_and_are_counted(auditor, tmp_path, caplog):
    secret = "call me on +44 20 7946 0958 about card 4111 1111 1111 1111"
    source = write_jsonl(tmp_path / "in.jsonl", [
        conversation("a", ("user", "hello")), "{broken",
        conversation("b", ("visitor", secret)), conversation("a", ("user", secret)),
        conversation("c", ("user", "hi"))])
    rejected = []
    with caplog.at_level(logging.DEBUG):
        summary = score_to_file(source, tmp_path / "out.jsonl", auditor,
                                errors=tmp_path / "err.jsonl", on_reject=rejected.append)
    assert (summary.read, summary.scored, summary.rejected) == (5, 2, 3)
    records = [json.loads(line) for line in (tmp_path / "err.jsonl").read_text().splitlines()]
    assert [(r["line"], r["id"]) for r in records] == [(2, None), (3, "b"), (4, "a")]
    assert all(r["source"] == str(source) and r["reason"] for r in records)
    assert records[1]["field"] == "messages[0].role" and "visitor" in records[1]["reason"]
    assert "duplicate id 'a'" in records[2]["reason"]
    assert [e.line for e in rejected] == [2, 3, 4]
    assert "4111" not in (tmp_path / "err.jsonl").read_text() and "4111" not in caplog.text
    assert "7946" not in caplog.text
    assert caplog.text.count("rejected:") == 3


def test_on_error_fail_stops_at_the_first_rejected_row(auditor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [*many(3), "{broken", *many(2, start=3)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(RejectedRowError, match="line 4") as info:
        score_to_file(source, out, auditor, errors=tmp_path / "err.jsonl", on_error="fail")
    assert info.value.error.line == 4
    assert ids(out) == ["c0", "c1", "c2"]  # everything before it, complete
    assert len((tmp_path / "err.jsonl").read_text().splitlines()) == 1
    with pytest.raises(ValueError, match="on_error"):
        score_to_file(source, out, auditor, on_error="ignore")


def test_the_errors_file_is_rewritten_by_a_resumed_run(auditor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [*many(2), "{broken", *many(2, start=2)])
    out, errors = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    score_to_file(source, out, auditor, errors=errors)
    summary = score_to_file(source, out, auditor, errors=errors, resume=True)
    assert (summary.scored, summary.resumed, summary.rejected) == (0, 4, 1)
    assert len(errors.read_text().splitlines()) == 1


def test_accounts_that_do_not_add_up_fail_the_run(auditor, tmp_path, monkeypatch):
    source = write_jsonl(tmp_path / "in.jsonl", many(6))
    score_in_chunks = auditor.score_in_chunks

    def losing_one(transcripts):  # a scorer bug: one transcript read, no row for it
        for chunk in score_in_chunks(transcripts):
            yield chunk[1:]

    monkeypatch.setattr(auditor, "score_in_chunks", losing_one)
    with pytest.raises(QualauditError, match="counts do not add up"):
        score_to_file(source, tmp_path / "out.jsonl", auditor)


def test_a_file_changed_during_the_run_fails_the_check(auditor, tmp_path, monkeypatch):
    from qualaudit.io.writers import RowWriter

    source = write_jsonl(tmp_path / "in.jsonl", many(3))
    monkeypatch.setattr(RowWriter, "rows_on_disk", lambda self: 2)
    with pytest.raises(QualauditError, match="holds 2 rows"):
        score_to_file(source, tmp_path / "out.jsonl", auditor)


def test_a_second_run_on_the_same_output_is_refused(auditor, tmp_path):
    from qualaudit.io.writers import open_locked

    source = write_jsonl(tmp_path / "in.jsonl", many(2))
    out = write_jsonl(tmp_path / "out.jsonl", ['{"id": "mine", "model": {}}'])
    with open_locked(out):
        with pytest.raises(OutputError, match="another process"):
            score_to_file(source, out, auditor)
        with pytest.raises(OutputError, match="another process"):
            score_to_file(source, tmp_path / "other.jsonl", auditor, errors=out)
    assert ids(out) == ["mine"]


def test_redact_covers_what_rows_echo(auditor, tmp_path):
    item = conversation("a", ("user", "hi"), customer_id="jo@example.com",
                        metadata={"note": "card 4111111111111111"})
    source = write_jsonl(tmp_path / "in.jsonl", [item])
    score_to_file(source, tmp_path / "plain.jsonl", auditor)
    score_to_file(source, tmp_path / "red.jsonl", auditor, redact=True)
    plain = json.loads((tmp_path / "plain.jsonl").read_text())
    red = json.loads((tmp_path / "red.jsonl").read_text())
    assert plain["metadata"]["customer_id"] == "jo@example.com"
    assert red["metadata"] == {**plain["metadata"], "customer_id": "[EMAIL]", "note": "card [CARD]"}
    assert {k: v for k, v in red.items() if k != "metadata"} == {
        k: v for k, v in plain.items() if k != "metadata"}


def test_an_output_for_another_input_is_pointed_out(auditor, tmp_path, caplog):
    out = tmp_path / "out.jsonl"
    score_to_file(write_jsonl(tmp_path / "a.jsonl", many(2)), out, auditor)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        score_to_file(write_jsonl(tmp_path / "b.jsonl", many(2, start=5)), out, auditor, resume=True)
    assert "2 rows whose ids are not in this input" in caplog.text
    assert len(ids(out)) == 4


@pytest.mark.parametrize("name, data", [
    ("empty.jsonl", b""), ("blank.jsonl", b"\n  \r\n\n"), ("header.csv", b"chat_id,role,text\n"),
    ("header.tsv", b"chat_id\trole\ttext\r\n\r\n"), ("empty.parquet", None), ("list", None),
])
def test_a_source_without_any_transcript_is_an_input_error(auditor, tmp_path, name, data):
    if name == "list":
        source = []
    elif data is None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = tmp_path / name
        pq.write_table(pa.table({"chat_id": pa.array([], pa.string()), "role": pa.array([], pa.string()),
                                 "text": pa.array([], pa.string())}), source)
    else:
        source = tmp_path / name
        source.write_bytes(data)
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="no transcripts found; expected one JSON object per "
                                         "line") as info:
        score_to_file(source, out, auditor)
    assert info.value.source == (str(source) if name != "list" else "<list>")
    assert not out.exists()  # never created, so no empty output is left behind
    before = write_jsonl(out, many(2)).read_bytes()
    for resume in (False, True):  # an existing output is neither truncated nor changed
        with pytest.raises(InputError, match="no transcripts found"):
            score_to_file(source, out, auditor, resume=resume)
        assert out.read_bytes() == before


def test_a_resumed_run_with_nothing_left_to_score_is_not_empty(auditor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", many(3))
    out = tmp_path / "out.jsonl"
    score_to_file(source, out, auditor)
    summary = score_to_file(source, out, auditor, resume=True)
    assert (summary.read, summary.scored, summary.resumed) == (3, 0, 3)
    only_bad = write_jsonl(tmp_path / "bad.jsonl", ["{broken"])
    summary = score_to_file(only_bad, tmp_path / "o2.jsonl", auditor)
    assert (summary.read, summary.rejected) == (1, 1)  # read, though nothing was valid


def test_summary_says_how_far_the_file_was_read(auditor, tmp_path):
    import pandas as pd

    source = write_jsonl(tmp_path / "in.jsonl", many(12))
    seen = []
    summary = score_to_file(source, tmp_path / "o.jsonl", auditor,
                            on_progress=lambda s: seen.append((s.bytes_read, s.total_bytes)))
    size = source.stat().st_size
    assert summary.bytes_read == summary.total_bytes == size
    assert len(seen) > 2 and all(total == size for _, total in seen)
    assert [read for read, _ in seen] == sorted(read for read, _ in seen) and seen[0][0] < size
    table = tmp_path / "in.csv"
    pd.DataFrame({"chat_id": ["a", "a", "b"], "role": ["user", "agent", "user"],
                  "text": ["my order", "sorry", "hi"]}).to_csv(table, index=False)
    summary = score_to_file(table, tmp_path / "o2.jsonl", auditor)
    assert summary.bytes_read == summary.total_bytes == table.stat().st_size
    summary = score_to_file(many(3), tmp_path / "o3.jsonl", auditor)  # not a file
    assert (summary.scored, summary.bytes_read, summary.total_bytes) == (3, None, None)

import json

import pandas as pd
import pytest

from qualaudit.io.writers import RowWriter, flat_row, output_format

ROW = {"id": "a", "agent_type": "ai", "resolution": 0.25, "satisfaction": 0.5, "empathy": None,
       "repeat_inquiry": 0.1, "escalation": 0.2, "resolution_dist": [0.2] * 5,
       "satisfaction_dist": [0.2] * 5, "escalation_turn": None,
       "evidence": {"resolution": [{"index": 1, "role": "agent", "contribution": 0.3}]},
       "n_turns": 2, "truncated": None,
       "model": {"name": "m", "version": "1", "weights_sha256": "0" * 64, "trained": False},
       "metadata": {"team": "blue"}, "schema_version": "1.0"}


def test_formats_from_extensions():
    assert [output_format(p) for p in (None, "x.jsonl", "x.CSV", "x.parquet")] == [
        "jsonl", "jsonl", "csv", "parquet"]
    with pytest.raises(ValueError, match="extension"):
        output_format("x.xlsx")


def test_nulls_survive_every_format(tmp_path):
    second = {**ROW, "id": "b", "empathy": 0.4, "escalation_turn": 3}
    for name in ("o.jsonl", "o.csv", "o.parquet"):
        with RowWriter(tmp_path / name) as writer:
            writer.write([ROW])
            writer.write([second])
    jsonl = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert jsonl == [ROW, second]
    for frame in (pd.read_csv(tmp_path / "o.csv"), pd.read_parquet(tmp_path / "o.parquet")):
        assert list(frame["id"]) == ["a", "b"]
        assert pd.isna(frame["empathy"][0]) and frame["empathy"][1] == 0.4
        assert pd.isna(frame["escalation_turn"][0]) and frame["escalation_turn"][1] == 3
        assert json.loads(frame["evidence"][0]) == ROW["evidence"]
        assert frame["truncated"].isna().all()


def test_an_empty_run_still_leaves_a_valid_parquet_file(tmp_path):
    RowWriter(tmp_path / "empty.parquet").close()
    frame = pd.read_parquet(tmp_path / "empty.parquet")
    assert len(frame) == 0 and "resolution" in frame.columns and "turns" not in frame.columns


def test_flat_rows_keep_scalars_and_encode_nested_fields():
    flat = flat_row(ROW)
    assert flat["resolution"] == 0.25 and flat["empathy"] is None
    assert json.loads(flat["model"]) == ROW["model"]


def test_a_second_writer_on_the_same_file_is_refused_and_changes_nothing(tmp_path):
    from qualaudit.errors import OutputError

    path = tmp_path / "o.jsonl"
    with RowWriter(path) as first:
        first.write([ROW])
        with pytest.raises(OutputError, match="another process"):
            RowWriter(path)
        with pytest.raises(OutputError, match="another process"):
            RowWriter(path, resume=True)
        first.write([{**ROW, "id": "b"}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b"]
    RowWriter(path).close()  # the lock goes with the file


def test_resume_reads_the_rows_back_and_drops_a_partial_last_line(tmp_path):
    path = tmp_path / "o.jsonl"
    with RowWriter(path, per_turn=True) as writer:
        writer.write([{**ROW, "turns": []}, {**ROW, "id": "b", "turns": []}])
    complete = path.read_bytes()
    path.write_bytes(complete + b'{"id": "c", "agent_ty')
    with RowWriter(path, resume=True) as writer:
        state = writer.resumed
        assert state.ids == {"a", "b"} and state.per_turn is True and state.rows == 2
        assert state.models == {("m", "1", "0" * 64, "fp32"): 2}  # 1.0 rows: fp32
        assert state.size == len(complete) and state.partial_bytes == len('{"id": "c", "agent_ty')
        assert writer.rows_on_disk() == 2
        writer.write([{**ROW, "id": "c"}])
        assert writer.rows_on_disk() == 3
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_resume_of_a_missing_file_starts_it(tmp_path):
    with RowWriter(tmp_path / "new.jsonl", resume=True) as writer:
        assert writer.resumed.rows == 0 and writer.resumed.per_turn is None
        writer.write([ROW])
    assert json.loads((tmp_path / "new.jsonl").read_text()) == ROW


@pytest.mark.parametrize("content, problem", [
    (b'{"id": "a", "model": {}}\n{"id": "a", "model": {}}\n', "second row for transcript 'a'"),
    (b'{"id": "a", "model": {}}\n\n', "line 2 is not an output row"),
    (b'{"id": "a", "model": {}}\n{"id": \n', "line 2 is not valid JSON"),
    (b'{"id": "a", "model": {}}\n[1, 2]\n', "line 2 is not an output row"),
    (b'{"id": 7, "model": {}}\n', "line 1 is not an output row"),
    (b'\xff\xfe\n', "line 1 is invalid UTF-8"),
])
def test_a_file_qualaudit_did_not_write_is_not_resumed(tmp_path, content, problem):
    from qualaudit.errors import OutputError

    path = tmp_path / "o.jsonl"
    path.write_bytes(content)
    with pytest.raises(OutputError, match=problem):
        RowWriter(path, resume=True)
    assert path.read_bytes() == content


@pytest.mark.parametrize("path", [None, "o.csv", "o.parquet"])
def test_only_jsonl_files_resume(tmp_path, path):
    from qualaudit.errors import UsageError

    with pytest.raises(UsageError, match="JSONL output file"):
        RowWriter(path and tmp_path / path, resume=True)
    assert not (path and (tmp_path / path).exists())


class HalfWrites:
    """A file whose writes stop halfway with Ctrl-C."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise KeyboardInterrupt

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.mark.parametrize("name", ["o.jsonl", "o.csv"])
def test_a_write_cut_short_is_taken_back(tmp_path, name):
    path = tmp_path / name
    writer = RowWriter(path)
    writer.write([ROW])
    before = path.read_bytes()
    writer._file = HalfWrites(writer._file)
    with pytest.raises(KeyboardInterrupt):
        writer.write([{**ROW, "id": "b"}])
    assert path.read_bytes() != before  # the half row is on disk until close
    writer.close()
    assert path.read_bytes() == before


def test_parquet_is_complete_after_an_exception(tmp_path):
    path = tmp_path / "o.parquet"
    with pytest.raises(KeyboardInterrupt), RowWriter(path) as writer:
        writer.write([ROW])
        raise KeyboardInterrupt
    assert list(pd.read_parquet(path)["id"]) == ["a"]


def test_error_records_locate_without_text(tmp_path):
    from qualaudit.errors import InputError
    from qualaudit.io.writers import ErrorWriter

    error = InputError("unknown role 'card 4111 1111 1111 1111'", source="in.csv", line=4,
                       transcript_id="c9", field="speaker", hint="Map it with --role-map")
    with ErrorWriter(tmp_path / "err.jsonl") as errors:
        errors.write(error)
    assert json.loads((tmp_path / "err.jsonl").read_text()) == {
        "source": "in.csv", "line": 4, "id": "c9", "field": "speaker",
        "reason": "unknown role 'card [CARD]'", "hint": "Map it with --role-map"}


def test_a_write_interrupted_after_all_its_bytes_are_written_is_kept(tmp_path, monkeypatch):
    import qualaudit.io.writers

    path = tmp_path / "o.jsonl"
    writer = RowWriter(path)
    writer.write([ROW])

    def interrupted_sync(fd):  # Ctrl-C while the OS syncs: the row is whole already
        raise KeyboardInterrupt

    monkeypatch.setattr(qualaudit.io.writers.os, "fsync", interrupted_sync)
    with pytest.raises(KeyboardInterrupt):
        writer.write([{**ROW, "id": "b"}])
    monkeypatch.undo()
    writer._dirty = True  # as if the signal came before the writer could note the row done
    writer.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_flat_tables_add_a_column_per_metadata_key(tmp_path):
    first = {**ROW, "metadata": {"team": "blue", "queue": 3}}
    later = {**ROW, "id": "b", "metadata": {"team": "red", "queue": "vip", "region": "eu"}}
    for name in ("o.csv", "o.tsv", "o.parquet"):
        with RowWriter(tmp_path / name) as writer:
            writer.write([first])
            writer.write([later])
    csv = pd.read_csv(tmp_path / "o.csv")
    tsv = pd.read_csv(tmp_path / "o.tsv", sep="\t")
    parquet = pd.read_parquet(tmp_path / "o.parquet")
    for table in (csv, tsv, parquet):
        # keys of the first chunk get columns; a key first seen later stays in the JSON column
        assert list(table.columns)[-2:] == ["metadata.team", "metadata.queue"]
        assert list(table["metadata.team"]) == ["blue", "red"]
        assert json.loads(table["metadata"][1])["region"] == "eu"
    assert parquet["metadata.queue"][0] == 3.0 and pd.isna(parquet["metadata.queue"][1])
    assert list(csv["metadata.queue"].astype(str)) == ["3", "vip"]
    assert list(pd.read_parquet(tmp_path / "o.parquet").groupby("metadata.team").size()) == [1, 1]


def test_text_cells_that_a_spreadsheet_would_run_are_guarded(tmp_path):
    from qualaudit.io import read_scores

    rows = [{**ROW, "id": text, "metadata": {"note": text, "delta": -2}}
            for text in ("=HYPERLINK(\"http://x\")", "+1", "-x", "@SUM(A1)", "'quoted", "plain")]
    with RowWriter(tmp_path / "o.csv") as writer:
        writer.write(rows)
    table = pd.read_csv(tmp_path / "o.csv", dtype=str)
    assert list(table["id"]) == ["'=HYPERLINK(\"http://x\")", "'+1", "'-x", "'@SUM(A1)",
                                 "''quoted", "plain"]
    assert set(table["metadata.delta"]) == {"-2"}  # numbers are left alone
    back = read_scores(tmp_path / "o.csv")
    assert [r["id"] for r in back] == [r["id"] for r in rows]
    assert [r["metadata.note"] for r in back] == [r["id"] for r in rows]


def test_an_empty_csv_still_has_its_header(tmp_path):
    with RowWriter(tmp_path / "o.csv"):
        pass
    assert (tmp_path / "o.csv").read_text().startswith("id,agent_type,resolution")

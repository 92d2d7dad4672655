import json

import pandas as pd
import pytest

from qualaudit.writers import RowWriter, flat_row, output_format

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

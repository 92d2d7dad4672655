"""Score files into the report's column table: every format and schema 1.x, metadata however
it is stored, and bad input named by file and line or counted with its reason."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qualaudit.errors import InputError, UsageError
from qualaudit.io.writers import RowWriter
from qualaudit.report.synthetic import SyntheticSpec, synthetic_rows, write_jsonl
from qualaudit.report.table import load_table, parse_time, turns_after_escalation


@pytest.fixture(scope="module")
def rows():
    return list(synthetic_rows(SyntheticSpec(n=120, weeks=4, seed=3)))


@pytest.mark.parametrize("name", ["s.jsonl", "s.csv", "s.tsv", "s.parquet"])
def test_every_format_gives_the_same_table(tmp_path, rows, name):
    with RowWriter(tmp_path / name, per_turn=True) as writer:
        writer.write(rows)
    table = load_table([tmp_path / name], ["channel", "intent"])
    reference = load_table(rows, ["channel", "intent"])
    assert table.ids == reference.ids
    for target, values in reference.scores.items():
        np.testing.assert_allclose(table.scores[target], values)
    np.testing.assert_array_equal(table.labels("channel"), reference.labels("channel"))
    np.testing.assert_allclose(table.started, reference.started)
    assert table.sources[0]["sha256"] and table.sources[0]["rows"] == len(rows)
    assert table.per_turn_rows == reference.per_turn_rows > 0


def test_metadata_as_json_text_only_and_as_parquet_struct(tmp_path, rows):
    head = rows[:10]
    path = tmp_path / "old.csv"  # schema 1.0 CSV: metadata only as JSON text, no precision
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["id", "agent_type", "resolution", "model", "metadata",
                                         "schema_version"])
        writer.writeheader()
        for r in head:
            model = {k: v for k, v in r["model"].items() if k != "precision"}
            writer.writerow({"id": r["id"], "agent_type": r["agent_type"],
                             "resolution": r["resolution"], "model": json.dumps(model),
                             "metadata": json.dumps(r["metadata"]), "schema_version": "1.0"})
    table = load_table([path], ["intent"])
    assert list(table.labels("intent")) == [r["metadata"]["intent"] for r in head]
    assert table.schema_versions == {"1.0": 10}
    assert table.models[0]["precision"].startswith("fp32 (schema 1.0")
    struct = tmp_path / "struct.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "agent_type": r["agent_type"],
                                          "resolution": r["resolution"],
                                          "metadata": r["metadata"]} for r in head]), struct)
    assert list(load_table([struct], ["intent"]).labels("intent")) == list(table.labels("intent"))


def test_another_schema_major_version_is_an_error_naming_file_and_line(tmp_path, rows):
    bad = [dict(r) for r in rows[:3]]
    bad[2]["schema_version"] = "2.0"
    path = tmp_path / "v2.jsonl"
    write_jsonl(iter(bad), path)
    with pytest.raises(InputError, match=r"v2.jsonl, line 3.*schema version 2.0"):
        load_table([path])


def test_an_unknown_cohort_column_lists_the_keys_found(rows):
    with pytest.raises(UsageError, match=r"'region'.*channel, customer_id"):
        load_table(rows[:5], ["region"])


def test_language_cohorts_use_the_given_language_else_the_detected_one(rows):
    given, detected, old = (dict(r) for r in rows[:3])
    given["metadata"] = {**given["metadata"], "language": "fr"}
    given["language"], detected["language"] = "en", "de"
    detected["metadata"] = {k: v for k, v in detected["metadata"].items() if k != "language"}
    old.pop("language", None)
    old["metadata"] = {k: v for k, v in old["metadata"].items() if k != "language"}
    table = load_table([given, detected, old], ["language"])
    assert list(table.labels("language"))[:2] == ["fr", "de"]
    with pytest.raises(UsageError, match="'language' is in no score row"):
        load_table([old], ["language"])


def test_bad_rows_are_counted_with_reason_and_location(tmp_path, rows):
    bad = [dict(r, metadata=dict(r["metadata"])) for r in rows[:6]]
    bad[1]["metadata"]["started_at"] = "last tuesday"
    bad[2] = dict(bad[0])  # a second row for the same id
    del bad[3]["agent_type"]
    path = tmp_path / "bad.jsonl"
    write_jsonl(iter(bad), path)
    table = load_table([path])
    reasons = {e["reason"]: e for e in table.exclusions.as_list()}
    assert table.n == 5
    started = reasons["metadata.started_at is not a date/time (ISO 8601 or epoch seconds, "
                      "years 1900-2200)"]
    assert started["count"] == 1 and started["examples"][0] == {
        "source": str(path), "line": 2, "id": bad[1]["id"]}
    assert reasons["a second row for an id already read (the first is used)"]["examples"][0]["line"] == 3
    assert reasons["no agent_type (left out of AI vs human)"]["count"] == 1
    assert "(missing)" in table.values["agent_type"]
    assert np.isnan(table.started[1])


def test_times_parse_as_utc_by_default():
    assert parse_time("2026-01-05T00:00:00Z") == parse_time("2026-01-05T01:00:00+01:00") \
        == parse_time("2026-01-05 00:00:00") == 1767571200.0
    assert parse_time(1767571200) == parse_time(" 1767571200 ") == 1767571200.0  # CSV: text
    for bad in ("soon", 1767571200000, "inf", "0001-01-01T00:00:00"):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert np.isnan(parse_time(None)) and np.isnan(parse_time(float("nan")))


def test_turns_after_escalation_stop_at_the_hand_off():
    turns = [(0, "customer", None), (1, "agent", "ai"), (2, "customer", None),
             (3, "agent", "ai"), (4, "customer", None), (5, "agent", "ai"), (6, "agent", "human")]
    assert turns_after_escalation(turns, 2) == (2.0, 1.0)
    assert turns_after_escalation(turns[:6], 2) == (2.0, 0.0)
    assert turns_after_escalation(turns, 5) == (0.0, 1.0)

"""The report's sections on synthetic score rows with planted effects (report.synthetic)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from qualaudit.report.build import ReportOptions, build_report
from qualaudit.report.synthetic import (
    SyntheticSpec,
    synthetic_rows,
    synthetic_transcript,
    write_jsonl,
)
from qualaudit.report.table import load_table
from qualaudit.report.trends import period_codes


@pytest.fixture(scope="module")
def rows():
    return list(synthetic_rows(SyntheticSpec(n=4000, weeks=26, seed=1)))


@pytest.fixture(scope="module")
def report(rows):
    return build_report(rows, ReportOptions(by=("agent_type", "team"), strata="intent",
                                            over="week", n_boot=300))


def test_the_report_is_plain_json(report):
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_cohorts_have_intervals_around_the_mean_and_small_ones_are_marked(rows):
    few = [dict(r, metadata=dict(r["metadata"], team="tiny")) for r in rows[:5]]
    report = build_report(few + rows[5:400], ReportOptions(by=("team",), n_boot=200))
    entries = {e["cohort"]: e for e in report["cohorts"]["tables"]["team"]}
    assert entries["tiny"]["small"] and entries["tiny"]["n"] == 5
    big = entries["bot"]
    assert not big["small"]
    for target in ("resolution", "escalation"):
        mean = big["targets"][target]["mean"]
        assert mean["low"] < mean["value"] < mean["high"]
        share = big["targets"][target]["share"]
        assert 0 <= share["low"] <= share["value"] <= share["high"] <= 1


def test_ai_vs_human_shows_the_planted_mix_effect(report):
    resolution = report["ai_vs_human"]["targets"]["resolution"]
    assert resolution["raw"]["low"] > 0 > resolution["adjusted"]["high"]  # Simpson's paradox
    assert "Mix effect on resolution" in resolution["mix_effect"]
    assert report["ai_vs_human"]["strata_source"] == "the column 'intent'"


def test_strata_with_one_group_only_are_not_comparable_and_left_out(rows):
    human_only = [dict(r, agent_type="human", metadata=dict(r["metadata"], intent="legal"))
                  for r in rows[:50]]
    report = build_report(human_only + rows[50:600], ReportOptions(strata="intent", n_boot=200))
    resolution = report["ai_vs_human"]["targets"]["resolution"]
    assert resolution["not_comparable"] == ["legal"]
    legal = next(s for s in resolution["strata"] if s["name"] == "legal")
    assert legal["weight"] == 0 and not legal["comparable"]
    assert sum(s["weight"] for s in resolution["strata"]) == pytest.approx(1)


def test_escalation_timing_from_per_turn_rows_or_transcripts(tmp_path, rows):
    report = build_report(rows[:800], ReportOptions(n_boot=200))
    timing = report["escalation_timing"]
    assert timing["n_timed"] > 0 and sum(h["count"] for h in timing["histogram"]) == timing["n_timed"]
    assert timing["handed_off"] + timing["not_handed_off"] == timing["n_timed"]
    bare = [{k: v for k, v in r.items() if k != "turns"} for r in rows[:800]]
    assert "score with `qualaudit score --per-turn`" in build_report(
        bare, ReportOptions(n_boot=200))["escalation_timing"]["note"]
    path = tmp_path / "t.jsonl"
    write_jsonl((synthetic_transcript(r) for r in rows[:800]), path)
    with_text = build_report(bare, ReportOptions(n_boot=200, transcripts=str(path)))
    assert with_text["escalation_timing"]["n_timed"] == with_text["escalation_timing"]["n_escalation_needed"] > 0


def test_speed_beside_quality(report):
    speed = report["speed"]
    by_type = {e["cohort"]: e for e in speed["tables"]["agent_type"]}
    assert by_type["human"]["median_minutes"] > 3 * by_type["ai"]["median_minutes"]
    assert speed["summary"].startswith("Median handle time")


def test_trends_alert_on_the_planted_decline_and_flag_the_model_change(report):
    trends = report["trends"]
    assert len(trends["periods"]) == 26 and trends["periods"][0] == "2026-W02"
    ai_resolution = [a for a in trends["alerts"] if a["cohort"] == "ai" and a["target"] == "resolution"]
    assert ai_resolution and ai_resolution[0]["cusum_alert"]
    # planted from week index 20 (2026-W22); the CUSUM's start estimate may run a little early
    assert ai_resolution[0]["since"] in ("2026-W19", "2026-W20", "2026-W21", "2026-W22", "2026-W23")
    assert "model change" in ai_resolution[0]["model_change"]
    overall = next(s for s in trends["series"] if s["key"] == "all")
    assert overall["model_changes"][0]["period"] == "2026-W15"


def test_periods_follow_the_time_zone_and_iso_weeks():
    stamps = np.array([1767571200.0 - 1800, np.nan])  # 2026-01-04 23:30 UTC (a Sunday)
    assert period_codes(stamps, "day")[1] == ["2026-01-04"]
    assert period_codes(stamps, "day", "Europe/Berlin")[1] == ["2026-01-05"]
    assert period_codes(stamps, "week")[1] == ["2026-W01"]
    assert period_codes(stamps, "week", "Europe/Berlin")[1] == ["2026-W02"]
    codes, labels = period_codes(stamps, "month")
    assert labels == ["2026-01"] and codes.tolist() == [0, -1]


def test_compare_pairs_shared_ids_and_counts_the_rest(tmp_path, rows):
    a = rows[:300]
    b = [dict(r, resolution=min(1.0, r["resolution"] + 0.1)) for r in rows[20:300]]
    b += [dict(rows[0], id="only-in-b")]
    paths = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(iter(a), paths[0]); write_jsonl(iter(b), paths[1])
    section = build_report([], ReportOptions(n_boot=200), compare=paths)["compare"]
    assert (section["n_paired"], section["only_in_a"], section["only_in_b"]) == (280, 20, 1)
    resolution = section["targets"]["resolution"]
    assert resolution["difference"]["low"] > 0.05
    assert resolution["flips"]["up"] > 0 and resolution["flips"]["down"] == 0
    assert section["targets"]["escalation"]["flips"]["share"] == 0
    provenance = build_report([], ReportOptions(n_boot=100), compare=paths)["provenance"]
    assert [i["path"] for i in provenance["inputs"]] == [str(p) for p in paths]
    assert all(len(i["sha256"]) == 64 for i in provenance["inputs"])
    assert {m["file"] for m in provenance["models"]} == {"compare A", "compare B"}


def test_triage_queues_with_redacted_evidence_text(tmp_path, rows):
    some = rows[:200]
    worst = min(some, key=lambda r: r["resolution"])
    transcripts = [synthetic_transcript(r) for r in some]
    mine = next(t for t in transcripts if t["id"] == worst["id"])
    index = worst["evidence"]["resolution"][0]["index"]
    mine["turns"][index]["text"] = "Write to jo@example.com or call +44 20 7946 0958"
    path = tmp_path / "t.jsonl"
    write_jsonl(iter(transcripts), path)
    options = ReportOptions(transcripts=str(path), thresholds={"escalation": 0.7}, n_boot=200)
    queues = build_report(some, options)["triage"]["queues"]
    first = queues["resolution"]["items"][0]
    assert first["id"] == worst["id"]
    assert first["evidence"][0]["text"] == "Write to [EMAIL] or call [PHONE]"
    assert queues["escalation"]["threshold"] == 0.7
    assert all(i["score"] >= 0.7 for i in queues["escalation"]["items"])
    assert queues["escalation"]["n_past_threshold"] == sum(r["escalation"] >= 0.7 for r in some)
    plain = build_report(some, ReportOptions(transcripts=str(path), redact=False, n_boot=200))
    assert "jo@example.com" in plain["triage"]["queues"]["resolution"]["items"][0]["evidence"][0]["text"]


def test_topic_strata_from_transcripts_are_reproducible(tmp_path, rows):
    some = rows[:400]
    path = tmp_path / "t.jsonl"
    write_jsonl((synthetic_transcript(r) for r in some), path)
    options = ReportOptions(transcripts=str(path), n_clusters=4, n_boot=200)
    first, second = (build_report(some, options)["ai_vs_human"] for _ in range(2))
    assert first == second and first["strata_source"].startswith("topic clusters")
    strata = first["targets"]["resolution"]["strata"]
    assert len(strata) == 4  # the four synthetic intents' openings
    assert first["targets"]["resolution"]["mix_effect"]


def test_agreement_section_with_labels(tmp_path, rows):
    some = rows[:200]
    labels = tmp_path / "labels.csv"
    labels.write_text("id,resolution\n" + "".join(
        f"{r['id']},{int(r['resolution'] > 0.6)}\n" for r in some[:120]), encoding="utf-8")
    section = build_report(some, ReportOptions(labels=str(labels), n_boot=200))["agreement"]
    assert section["n_matched"] == 120
    assert section["targets"]["resolution"]["auroc"]["value"] > 0.9


def test_provenance_names_files_hashes_models_and_seed(tmp_path, rows):
    path = tmp_path / "s.jsonl"
    write_jsonl(iter(rows[:100]), path)
    provenance = build_report([path], ReportOptions(seed=7, n_boot=200))["provenance"]
    assert provenance["inputs"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["seed"] == 7 and provenance["qualaudit_version"]
    assert {m["version"] for m in provenance["models"]} == {"0.3"}
    assert provenance["schema_versions"] == {"1.1": 100}


def test_large_cohorts_use_the_analytic_interval(rows):
    table = load_table(rows)
    from qualaudit.metrics import mean_interval

    values = table.scores["resolution"]
    boot = mean_interval(values, n_resamples=2000)
    analytic = mean_interval(values, analytic_above=10)
    assert boot["method"] == "bootstrap" and analytic["method"] == "analytic"
    assert analytic["low"] == pytest.approx(boot["low"], abs=0.003)
    assert analytic["high"] == pytest.approx(boot["high"], abs=0.003)


def test_a_dataframe_gives_the_same_report_as_its_rows(rows):
    import pandas as pd

    some = rows[:300]
    frame = pd.DataFrame(some)
    options = ReportOptions(by=("agent_type",), strata="intent", n_boot=100)
    from_rows, from_frame = build_report(some, options), build_report(frame, options)
    for section in ("cohorts", "ai_vs_human", "escalation_timing", "triage"):
        assert from_frame[section] == from_rows[section]


def test_mixed_models_are_noted(report, rows):
    assert "2 models" in report["notes"][0]
    one_model = build_report(rows[:200], ReportOptions(n_boot=100))  # all before the change
    assert one_model["notes"] == []


def test_a_user_given_reference_mix_weights_the_strata(rows):
    mix = {"password_reset": 3.0, "order_status": 1.0}
    section = build_report(rows[:1500], ReportOptions(strata="intent", reference_mix=mix,
                                                      n_boot=100))["ai_vs_human"]
    weights = {s["name"]: s["weight"] for s in section["targets"]["resolution"]["strata"]}
    assert weights == pytest.approx({"password_reset": 0.75, "order_status": 0.25,
                                     "billing_dispute": 0.0, "technical_outage": 0.0})
    assert section["reference"] == "user-given mix"


def test_conversations_that_end_before_they_start_are_counted(rows):
    bad = [dict(r, metadata=dict(r["metadata"])) for r in rows[:50]]
    bad[4]["metadata"]["ended_at"] = "2020-01-01T00:00:00Z"
    report = build_report(bad, ReportOptions(n_boot=100))
    entry = next(e for e in report["exclusions"] if e["section"] == "speed")
    assert entry["count"] == 1 and entry["examples"][0]["line"] == 5
    assert report["speed"]["negative_durations"] == 1


def test_topic_clusters_in_mini_batches_find_the_same_topics(rows):
    from qualaudit.report.synthetic import INTENTS
    from qualaudit.report.topics import topic_strata

    some = rows[:600]
    ids = [r["id"] for r in some]
    openings = {r["id"]: INTENTS[r["metadata"]["intent"]][3] for r in some}
    full, _, _ = topic_strata(ids, openings, 4)
    batched, names, info = topic_strata(ids, openings, 4, minibatch_above=100)
    assert info["method"].endswith("(mini-batch)") and len(names) == 4
    pairs = set(zip(full.tolist(), batched.tolist()))
    assert len(pairs) == 4  # the same partition, whatever the cluster numbers
    assert topic_strata(ids, openings, 4, minibatch_above=100)[0].tolist() == batched.tolist()


def test_cohort_values_are_redacted_by_default(rows):
    some = [dict(r, metadata=dict(r["metadata"])) for r in rows[:100]]
    for i, r in enumerate(some[:10]):
        r["metadata"]["team"] = f"agent{i}@example.com"
    cohorts = build_report(some, ReportOptions(by=("team",), n_boot=100))["cohorts"]["tables"]["team"]
    names = {e["cohort"]: e["n"] for e in cohorts}
    assert names["[EMAIL]"] == 10 and not any("@" in n for n in names)
    shown = build_report(some, ReportOptions(by=("team",), redact=False, n_boot=100))
    assert "agent3@example.com" in {e["cohort"] for e in shown["cohorts"]["tables"]["team"]}


def test_long_evidence_text_is_cut(tmp_path, rows):
    from qualaudit.report.triage import SHOWN_TEXT_CHARS

    some = rows[:100]
    worst = min(some, key=lambda r: r["resolution"])
    transcripts = [synthetic_transcript(r) for r in some]
    mine = next(t for t in transcripts if t["id"] == worst["id"])
    mine["turns"][worst["evidence"]["resolution"][0]["index"]]["text"] = "word " * 2000
    path = tmp_path / "t.jsonl"
    write_jsonl(iter(transcripts), path)
    queue = build_report(some, ReportOptions(transcripts=str(path), n_boot=100))["triage"]
    text = queue["queues"]["resolution"]["items"][0]["evidence"][0]["text"]
    assert len(text) == SHOWN_TEXT_CHARS and text.endswith("…")


def test_a_key_with_many_values_lists_the_largest_cohorts_and_counts_the_rest(rows):
    from qualaudit.report.markdown import to_markdown
    from qualaudit.report.table import MAX_COHORTS

    some = rows[:1000]
    report = build_report(some, ReportOptions(by=("customer_id",), over="week", n_boot=100))
    entries = report["cohorts"]["tables"]["customer_id"]
    sizes = [e["n"] for e in entries]
    assert len(entries) == MAX_COHORTS and sizes == sorted(sizes, reverse=True)
    omitted = report["cohorts"]["omitted"]["customer_id"]
    assert omitted["rows"] + sum(sizes) == 1000 and omitted["cohorts"] > 0
    assert f"{omitted['cohorts']} smaller cohort(s)" in to_markdown(report)
    series = [s for s in report["trends"]["series"] if s["key"] == "customer_id"]
    assert len(series) <= MAX_COHORTS

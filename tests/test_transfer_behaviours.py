"""The transfer behaviour suite (benchmarks/transfer_behaviours.jsonl) is well formed, and the
runner (benchmarks/transfer_behaviours.py) judges pairs with the right arithmetic."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import conversation, load_benchmark
from qualaudit import Auditor, UntrainedModelWarning
from qualaudit.errors import InputError
from qualaudit.io import iter_records

suite = load_benchmark("transfer_behaviours")
SUITE_PATH = Path(suite.DEFAULT_SUITE)
ITEMS = [json.loads(line) for line in SUITE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
OLD_PAIRS = Path(__file__).resolve().parent / "behaviour_pairs.jsonl"
FRESH_PAIRS = SUITE_PATH.with_name("fresh_pairs.jsonl")


# ------------------------------------------------------------------ the suite file
def fresh(behaviour: str) -> list[dict]:
    items = [item for item in suite.load_pairs(FRESH_PAIRS) if item["behaviour"] == behaviour]
    assert len(items) == 30, behaviour  # each behaviour added after round 53
    return items


def test_fresh_closing_and_fix_pairs_differ_only_in_the_last_customer_message():
    items = suite.load_pairs(FRESH_PAIRS)
    closings = [item for item in items if item["behaviour"] == "closing_thanks"]
    fixes = [item for item in items if item["behaviour"] == "fix_confirmed"]
    assert len(closings) == len(fixes) == 40
    assert sum(bool(item["thanks_drop"]) for item in closings) == 20
    assert len({item["id"] for item in items}) == len(items) == 200
    for item in closings + fixes:
        kind = {"closing_thanks": "invariance", "fix_confirmed": "directional"}[item["behaviour"]]
        assert (item["target"], item["kind"]) == ("resolution", kind)
        a, b = item["a"]["messages"], item["b"]["messages"]
        assert a[-1]["role"] == "user", item["id"]
        if kind == "invariance":  # b is a without its closing
            assert a[:-1] == b, item["id"]
        else:  # the customer's last message differs: it worked, or it did not
            assert a[:-1] == b[:-1] and a[-1] != b[-1] and b[-1]["role"] == "user", item["id"]


def test_fresh_repeated_answers_share_their_opening_and_repeat_at_turns_3_and_5():
    for item in fresh("repeated_answer"):
        assert item["target"] == ["escalation", "turns[3].breakdown", "turns[5].breakdown"]
        assert item["expect"] == ["a>b"] * 3 and item["kind"] == "directional"
        a, b = item["a"]["messages"], item["b"]["messages"]
        assert len(a) == 7 and len(b) in (6, 7) and a[:3] == b[:3], item["id"]
        assert [m["role"] for m in a] == ["user", "assistant"] * 3 + ["user"], item["id"]
        assert a[3] != b[3] and a[5] != b[5], item["id"]


def test_fresh_names_pairs_differ_only_in_the_customers_second_turn():
    for item in fresh("names_and_thanks"):
        assert (item["kind"], item["target"]) == ("invariance", ["escalation", "turns[2].asks_for_human"])
        a, b = item["a"]["messages"], item["b"]["messages"]
        assert [m["role"] for m in a] == [m["role"] for m in b] == ["user", "assistant"] * 2, item["id"]
        assert [k for k in range(4) if a[k] != b[k]] == [2], item["id"]


def test_fresh_silent_endings_differ_only_in_the_agents_last_turn():
    for item in fresh("silent_ending"):
        assert (item["kind"], item["target"], item["expect"]) == ("directional", "resolution", "a>b")
        a, b = item["a"]["messages"], item["b"]["messages"]
        assert len(a) == len(b) in (2, 4) and a[-1]["role"] == b[-1]["role"] == "assistant", item["id"]
        assert a[:-1] == b[:-1] and a[-1] != b[-1], item["id"]


def test_fresh_parity_twins_share_every_customer_turn_and_reword_every_agent_turn():
    for item in fresh("style_parity"):
        assert item["kind"] == "parity" and len(item["target"]) == 5
        assert (item["a"]["agent_type"], item["b"]["agent_type"]) == ("ai", "human")
        a, b = item["a"]["messages"], item["b"]["messages"]
        assert [m["role"] for m in a] == [m["role"] for m in b], item["id"]
        for x, y in zip(a, b, strict=True):
            assert (x == y) == (x["role"] == "user"), item["id"]


def test_every_behaviour_has_at_least_20_pairs_and_ids_are_unique():
    counts = Counter(item["behaviour"] for item in ITEMS)
    assert set(counts) == set(suite.BEHAVIOURS), counts
    assert min(counts.values()) >= 20, counts
    ids = [item["id"] for item in ITEMS]
    assert len(ids) == len(set(ids))
    transcript_ids = [item[side]["id"] for item in ITEMS for side in ("a", "b")]
    assert len(transcript_ids) == len(set(transcript_ids))  # the scorer rejects repeats


@pytest.mark.parametrize("item", ITEMS, ids=[item["id"] for item in ITEMS])
def test_item_has_required_fields_and_parses(item):
    assert {"behaviour", "id", "domain", "kind", "target", "a", "b"} <= set(item)
    assert item["kind"] in suite.KINDS
    targets = suite.as_list(item["target"])
    if item["kind"] == "directional":
        expects = suite.as_list(item["expect"])
        assert len(expects) == len(targets) and set(expects) <= {"a>b", "a<b"}
    else:
        assert "expect" not in item
    records = list(iter_records([item["a"], item["b"]]))
    assert not [r for r in records if isinstance(r, InputError)], records
    for record in records:
        assert 2 <= len(record.turns) <= 8
        for target in targets:  # a per-turn target must point at an existing turn
            if match := suite._TURN_TARGET.fullmatch(target):
                assert int(match.group(1)) < len(record.turns)
    assert item["a"]["messages"] != item["b"]["messages"]


def test_closing_thanks_marks_the_resolved_pairs_that_measure_the_drop():
    closing = [item for item in ITEMS if item["behaviour"] == "closing_thanks"]
    drops = [item for item in closing if item.get("thanks_drop")]
    assert 5 <= len(drops) < len(closing)  # resolved and unresolved pairs both present
    for item in closing:  # a = b plus one closing customer turn
        assert item["a"]["messages"][:-1] == item["b"]["messages"]
        assert item["a"]["messages"][-1]["role"] == "user"


def test_style_parity_spans_three_domains_and_is_reworded():
    parity = [item for item in ITEMS if item["behaviour"] == "style_parity"]
    assert len({item["domain"] for item in parity}) >= 3
    for item in parity:
        assert (item["a"]["agent_type"], item["b"]["agent_type"]) == ("ai", "human")
        agent_a = [m["content"] for m in item["a"]["messages"] if m["role"] == "assistant"]
        agent_b = [m["content"] for m in item["b"]["messages"] if m["role"] == "assistant"]
        assert all(x != y for x, y in zip(agent_a, agent_b, strict=True))


def test_no_transcript_is_taken_from_the_existing_pairs():
    old = {json.dumps(json.loads(line)[side]["messages"])
           for line in OLD_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()
           for side in ("a", "b")}
    assert not [item["id"] for item in ITEMS
                if {json.dumps(item["a"]["messages"]), json.dumps(item["b"]["messages"])} & old]


# ------------------------------------------------------------------ the runner's arithmetic
def _scored(tiny_model_dir, items):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        auditor = Auditor.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
        return auditor.score([item[side] for item in items for side in ("a", "b")])


def _with_resolution(score, value):
    return replace(score, resolution=value)


@pytest.mark.parametrize(("kind", "expect", "a", "b", "passed"), [
    ("directional", "a>b", 0.60, 0.55, True),     # margin exactly 0.05 passes
    ("directional", "a>b", 0.60, 0.56, False),    # in the right direction but too small
    ("directional", "a<b", 0.60, 0.50, False),
    ("directional", "a<b", 0.40, 0.50, True),
    ("invariance", None, 0.50, 0.45, True),
    ("invariance", None, 0.44, 0.50, False),
    ("parity", None, 0.70, 0.66, True),
])
def test_check_pair_margins(tiny_model_dir, kind, expect, a, b, passed):
    item = {"id": "x", "kind": kind, "target": "resolution", **({"expect": expect} if expect else {})}
    score_a, score_b = _scored(tiny_model_dir, ITEMS[:1])
    (check,) = suite.check_pair(item, _with_resolution(score_a, a), _with_resolution(score_b, b))
    assert check["delta"] == pytest.approx(a - b)
    assert check["passed"] is passed


def test_summarise_pass_rates_means_and_criteria(tiny_model_dir):
    chosen = [next(i for i in ITEMS if i["behaviour"] == name) for name in suite.BEHAVIOURS]
    chosen += [i for i in ITEMS if i["behaviour"] == "closing_thanks" and i.get("thanks_drop")][1:3]
    scores = _scored(tiny_model_dir, chosen)
    report = suite.summarise(chosen, scores)
    assert list(report["behaviours"]) == list(suite.BEHAVIOURS)
    for name, r in report["behaviours"].items():
        items = [i for i in chosen if i["behaviour"] == name]
        assert r["pairs"] == len(items) and r["passed"] + len(r["failures"]) == r["pairs"]
        assert r["pass_rate"] == pytest.approx(r["passed"] / r["pairs"])
        for i, item in enumerate(chosen):
            if item["behaviour"] != name:
                continue
            checks = suite.check_pair(item, scores[2 * i], scores[2 * i + 1])
            assert (item["id"] in r["failures"]) is not all(c["passed"] for c in checks)
    # the drop is the mean resolution difference over the resolved pairs marked thanks_drop
    drops = [scores[2 * i].resolution - scores[2 * i + 1].resolution
             for i, item in enumerate(chosen) if item.get("thanks_drop")]
    assert report["closing_thanks_drop_pairs"] == len(drops) >= 2
    assert report["closing_thanks_drop"] == pytest.approx(sum(drops) / len(drops))
    i = next(k for k, item in enumerate(chosen) if item["behaviour"] == "fix_confirmed")
    assert report["fix_confirmed_rise"] == pytest.approx(scores[2 * i].resolution - scores[2 * i + 1].resolution)
    parity = report["behaviours"]["style_parity"]["targets"]
    assert set(parity) == {"resolution", "satisfaction", "empathy", "repeat_inquiry", "escalation"}
    k = chosen.index(next(item for item in chosen if item["behaviour"] == "style_parity"))
    assert parity["escalation"]["mean_abs_delta"] == pytest.approx(
        abs(scores[2 * k].escalation - scores[2 * k + 1].escalation))
    assert report["all_criteria_met"] is all(report["criteria"].values())
    assert "closing_thanks" in suite.to_markdown(report)


def test_per_turn_targets_read_the_right_turn(tiny_model_dir):
    item = next(i for i in ITEMS if i["behaviour"] == "repeated_answer")
    score_a, _ = _scored(tiny_model_dir, [item])
    assert suite.read_target(score_a, "turns[3].breakdown") == score_a.turns[3].breakdown
    assert suite.read_target(score_a, "turns[2].asks_for_human") == \
        score_a.turns[2].escalation_signals["asks_for_human"]
    with pytest.raises(ValueError, match="has no score"):
        suite.read_target(score_a, "turns[2].breakdown")  # a customer turn has no breakdown
    with pytest.raises(ValueError, match="no turn at input position"):
        suite.read_target(score_a, "turns[40].breakdown")


# ------------------------------------------------------------------ the references beside the model
def _pair(pid, behaviour, kind, target, a, b, **extra):
    return {"id": pid, "behaviour": behaviour, "kind": kind, "target": target, "a": a, "b": b, **extra}


SYNTHETIC = [
    _pair("fix-1", "fix_confirmed", "directional", ["resolution", "turns[2].dissatisfied"],
          conversation("f/a", ("user", "my card is declined"), ("assistant", "I lifted the block"),
                       ("user", "it works now")),
          conversation("f/b", ("user", "my card is declined"), ("assistant", "I lifted the block"),
                       ("user", "still declined")), expect=["a>b", "a<b"]),
    _pair("names-1", "names_and_thanks", "invariance", "turns[2].asks_for_human",
          conversation("n/a", ("user", "hi"), ("assistant", "your name?"), ("user", "Ann Lee")),
          conversation("n/b", ("user", "hi"), ("assistant", "your name?"), ("user", "sure"))),
    _pair("twin-1", "style_parity", "parity", ["resolution", "satisfaction", "empathy"],
          conversation("t/a", ("user", "where is my parcel"), ("assistant", "It arrives Monday.")),
          conversation("t/b", ("user", "where is my parcel"), ("assistant", "Should be with you Monday!"),
                       agent_type="human")),
]


def test_restricted_keeps_only_the_named_targets_with_their_expectations():
    kept = suite.restricted(SYNTHETIC, ("resolution", "empathy"))
    assert [i["id"] for i in kept] == ["fix-1", "twin-1"]  # names-1 checks no kept target
    assert kept[0]["target"] == ["resolution"] and kept[0]["expect"] == ["a>b"]
    assert kept[1]["target"] == ["resolution", "empathy"] and "expect" not in kept[1]
    assert SYNTHETIC[0]["target"] == ["resolution", "turns[2].dissatisfied"]  # not changed in place
    with pytest.raises(ValueError, match="2 targets but 1 expectations"):
        suite.restricted([{**SYNTHETIC[0], "expect": "a>b"}], ("resolution",))


def test_summarise_reads_a_reference_score_per_target():
    kept = suite.restricted(SYNTHETIC, ("resolution", "empathy"))
    scores = [{"resolution": 0.9, "empathy": 0.2}, {"resolution": 0.5, "empathy": 0.2},
              {"resolution": 0.4, "empathy": 0.30}, {"resolution": 0.42, "empathy": 0.20}]
    report = suite.summarise(kept, scores)
    assert report["behaviours"]["fix_confirmed"]["passed"] == 1
    assert report["fix_confirmed_rise"] == pytest.approx(0.4)
    twins = report["behaviours"]["style_parity"]
    assert twins["passed"] == 0 and twins["targets"]["empathy"]["mean_abs_delta"] == pytest.approx(0.1)


def test_references_are_trained_once_and_compared_on_the_same_checks(
        tiny_model_dir, tiny_encoder_dir, tmp_path, monkeypatch):
    from test_quality_benchmark import write_tiny_data

    data_dir = write_tiny_data(tmp_path / "data", seed=1, per_split={"train": 8, "dev": 2, "report": 2},
                               uss_files=("MWOZ",))
    path, cache = tmp_path / "suite.jsonl", tmp_path / "cache"
    path.write_text("".join(json.dumps(i) + "\n" for i in SYNTHETIC), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auditor = Auditor.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
        report = suite.run_suite(auditor, path, data_dir, tiny_encoder_dir, cache)
    compared = report["references"]
    assert compared["targets"] == ["resolution", "escalation", "repeat_inquiry", "empathy"]
    assert set(compared["systems"]) == {"model", "tfidf", "single_task"}
    assert len(list(cache.glob("suite-*.json"))) == 4  # one fine-tune per main target
    for name, summary in compared["systems"].items():
        assert list(summary["behaviours"]) == ["fix_confirmed", "style_parity"], name
        assert set(summary["behaviours"]["style_parity"]["targets"]) == {"resolution", "empathy"}, name
    # the model's restricted figures are its own scores on the kept checks
    model = compared["systems"]["model"]
    assert model["fix_confirmed_rise"] == pytest.approx(report["fix_confirmed_rise"])
    assert model["behaviours"]["style_parity"]["targets"]["empathy"] == \
        report["behaviours"]["style_parity"]["targets"]["empathy"]
    markdown = suite.references_markdown(compared)
    assert "| fix_confirmed (resolution) |" in markdown and "single-task fine-tune" in markdown

    def no_training(*args, **kwargs):
        raise AssertionError("a cached single-task reference was trained again")

    monkeypatch.setattr(suite.quality.baselines, "fine_tune_single_task", no_training)
    again = suite.reference_scores(SYNTHETIC, data_dir, tiny_encoder_dir, cache)
    assert all(set(row) == set(compared["targets"]) for rows in again.values() for row in rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = auditor.score([item[side] for item in SYNTHETIC for side in ("a", "b")])
    assert suite.compare_references(SYNTHETIC, scores, again) == compared

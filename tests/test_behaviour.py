"""Behaviour pairs (tests/behaviour_pairs.jsonl) and benchmarks/behaviour.py: the pairs file is
well formed and minimal, the checker runs on a tiny model, and the bundled model passes."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest

from conftest import load_benchmark
from qualaudit import Auditor, UntrainedModelWarning
from qualaudit.model import default_model_path

ROOT = Path(__file__).resolve().parents[1]
PAIRS_PATH = ROOT / "tests" / "behaviour_pairs.jsonl"
MIN_PAIRS = 12

behaviour = load_benchmark("behaviour")
MIN_PASS_RATE = behaviour.MIN_PASS_RATE
PAIRS = [json.loads(line) for line in PAIRS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def _roles(transcript: dict) -> list[str]:
    return [m["role"] for m in transcript["messages"]]


def _texts(transcript: dict) -> list[str]:
    return [m["content"] for m in transcript["messages"]]


# ------------------------------------------------------------------ the pairs file
def test_every_behaviour_has_enough_pairs_with_unique_ids():
    counts = Counter(p["behaviour"] for p in PAIRS)
    assert set(counts) == set(behaviour.BEHAVIOURS), counts
    assert min(counts.values()) >= MIN_PAIRS, counts
    ids = [p["id"] for p in PAIRS]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    transcript_ids = [p[side]["id"] for p in PAIRS for side in ("a", "b")]
    # the scorer rejects a repeated transcript id, so they must be unique across the file
    assert len(transcript_ids) == len(set(transcript_ids))


@pytest.mark.parametrize("pair", PAIRS, ids=[p["id"] for p in PAIRS])
def test_pair_is_well_formed(pair):
    for side in ("a", "b"):
        messages = pair[side]["messages"]
        assert 2 <= len(messages) <= 14, f"{pair['id']}/{side}: {len(messages)} messages"
        assert all(m["role"] in ("user", "assistant") and m["content"].strip() for m in messages)
        assert {"user", "assistant"} <= set(_roles(pair[side]))
    assert _texts(pair["a"]) != _texts(pair["b"])


@pytest.mark.parametrize("pair", [p for p in PAIRS if p["behaviour"] in ("asks_for_human", "empathy")],
                         ids=lambda p: p["id"])
def test_swap_pairs_differ_only_at_their_turn(pair):
    a, b, k = pair["a"], pair["b"], pair["turn"]
    assert _roles(a) == _roles(b)
    assert 0 <= k < len(a["messages"])
    expected_role = "user" if pair["behaviour"] == "asks_for_human" else "assistant"
    assert a["messages"][k]["role"] == expected_role
    differing = [i for i, (x, y) in enumerate(zip(_texts(a), _texts(b), strict=True)) if x != y]
    assert differing == [k]


@pytest.mark.parametrize("pair", [p for p in PAIRS if p["behaviour"] in ("loop", "solved_confirmed")],
                         ids=lambda p: p["id"])
def test_branch_pairs_share_their_opening(pair):
    """Loop and solved/open pairs start from the same customer problem and diverge later."""
    assert pair["a"]["messages"][0] == pair["b"]["messages"][0]
    assert pair["a"]["messages"][0]["role"] == "user"


@pytest.mark.parametrize("pair", [p for p in PAIRS if p["behaviour"] == "closing_thanks"],
                         ids=lambda p: p["id"])
def test_closing_pairs_only_append_pleasantries(pair):
    """`a` is `b` plus closing turns that open with the customer's and say nothing new."""
    a, b = pair["a"]["messages"], pair["b"]["messages"]
    assert a[:len(b)] == b and len(a) > len(b)
    closing = a[len(b):]
    assert closing[0]["role"] == "user"
    assert all(len(m["content"].split()) <= 8 for m in closing), closing


def test_pairs_cover_many_domains_and_both_agent_types():
    assert len({p["domain"] for p in PAIRS}) >= 8
    assert {p["agent_type"] for p in PAIRS} == {"ai", "human"}
    request_turns = {p["turn"] for p in PAIRS if p["behaviour"] == "asks_for_human"}
    assert len(request_turns) >= 3  # requests at several positions, not always the last turn


# ------------------------------------------------------------------ the checker
def test_check_behaviours_on_tiny_model(tiny_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        auditor = Auditor.from_pretrained(tiny_model_dir, device="cpu")
        report = behaviour.check_behaviours(auditor, PAIRS_PATH)
    counts = Counter(p["behaviour"] for p in PAIRS)
    assert list(report) == list(behaviour.BEHAVIOURS)
    for name, entry in report.items():
        assert set(entry) == {"pairs", "passed", "pass_rate", "failures"}
        assert entry["pairs"] == counts[name]
        assert entry["passed"] + len(entry["failures"]) == entry["pairs"]
        assert entry["pass_rate"] == pytest.approx(entry["passed"] / entry["pairs"])
        assert set(entry["failures"]) <= {p["id"] for p in PAIRS if p["behaviour"] == name}
    table = behaviour.to_markdown(report)
    assert all(name in table for name in behaviour.BEHAVIOURS)


# ------------------------------------------------------------------ the bundled model
@pytest.mark.integration
def test_bundled_model_passes_behaviours():
    path = default_model_path()
    assert path is not None, ("no bundled model at models/default: the trained default model "
                              "must be committed before these behaviour tests can pass")
    report = behaviour.check_behaviours(Auditor.from_pretrained(path, device="cpu"), PAIRS_PATH)
    print("\n" + behaviour.to_markdown(report))
    low = {name: (round(r["pass_rate"], 3), r["failures"])
           for name, r in report.items() if name in behaviour.GUARANTEED and r["pass_rate"] < MIN_PASS_RATE}
    assert not low, f"behaviour pass rate below {MIN_PASS_RATE}: {low}"

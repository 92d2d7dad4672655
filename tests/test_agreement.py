"""Agreement between scores and human labels, on synthetic data where the answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qualaudit.errors import InputError
from qualaudit.io import read_scores
from qualaudit.io.writers import RowWriter
from qualaudit.report.agreement import agreement, to_markdown

GRADES = np.arange(-2, 3)


def row(tid: str, p: float, grade: int | None = None, empathy: float | None = 0.5, **extra) -> dict:
    """A score row with every probability `p`; the 5-level distributions sit on `grade`."""
    dist = np.eye(5)[grade + 2].tolist() if grade is not None else [0.2] * 5
    return {"id": tid, "resolution": p, "satisfaction": p, "repeat_inquiry": p, "escalation": p,
            "empathy": empathy, "resolution_dist": dist, "satisfaction_dist": dist, **extra}


def synthetic(n: int = 200, seed: int = 0):
    """Labels half positive, with scores that agree perfectly (0.9 / 0.1, grades equal)."""
    rng = np.random.default_rng(seed)
    grades = rng.integers(-2, 3, n)
    binary = (rng.random(n) < 0.5).astype(int)
    labels = {f"c{i}": {"resolution_grade": int(g), "satisfaction": int(g), "escalation": int(b),
                        "repeat_inquiry": int(b)} for i, (g, b) in enumerate(zip(grades, binary))}
    return labels, grades, binary


def value(report, target, metric):
    return report["targets"][target][metric]["value"]


def test_perfect_agreement():
    labels, grades, binary = synthetic()
    # the binary targets follow `binary`, the graded ones their grade
    scores = [row(f"c{i}", 0.9 if b else 0.1, int(g)) for i, (g, b) in enumerate(zip(grades, binary))]
    for s, g in zip(scores, grades):
        s["resolution"] = s["satisfaction"] = 0.9 if g > 0 else 0.1
    report = agreement(scores, labels, n_boot=200)
    for target in ("resolution", "satisfaction", "escalation", "repeat_inquiry"):
        r = report["targets"][target]
        assert r["n"] == 200 and r["unscored"] == 0
        for metric in ("auroc", "f1", "kappa"):
            assert r[metric] == {"value": 1.0, "low": 1.0, "high": 1.0}, (target, metric)
        assert r["ece"]["value"] == pytest.approx(0.1)
    assert value(report, "resolution", "qwk") == 1.0
    assert report["targets"]["resolution"]["n_graded"] == 200
    assert report["targets"]["escalation"]["qwk"] is None  # no graded label
    assert report["missing_scores"] == 0 and report["n_matched"] == 200


def test_inverted_scores():
    labels, grades, binary = synthetic()
    scores = [row(f"c{i}", 0.1 if b else 0.9, -int(g)) for i, (g, b) in enumerate(zip(grades, binary))]
    report = agreement(scores, labels, n_boot=200)
    assert value(report, "escalation", "auroc") == 0.0
    assert value(report, "escalation", "f1") == 0.0
    assert value(report, "escalation", "kappa") < -0.9
    assert value(report, "resolution", "qwk") < -0.9  # grades mirrored around 0


def test_random_scores_are_near_chance_with_intervals_covering_it():
    labels, grades, binary = synthetic(n=600, seed=1)
    rng = np.random.default_rng(2)
    scores = [row(f"c{i}", float(rng.random()), int(rng.integers(-2, 3))) for i in range(600)]
    report = agreement(scores, labels, n_boot=300, seed=3)
    for target in ("resolution", "escalation"):
        r = report["targets"][target]
        assert abs(r["auroc"]["value"] - 0.5) < 0.07
        assert r["auroc"]["low"] < 0.5 < r["auroc"]["high"]
        assert r["kappa"]["low"] < 0 < r["kappa"]["high"]
        assert r["auroc"]["high"] - r["auroc"]["low"] < 0.15
    assert report["targets"]["resolution"]["qwk"]["low"] < 0 < report["targets"]["resolution"]["qwk"]["high"]


def test_same_seed_same_report_and_intervals_bracket_values():
    labels, grades, binary = synthetic(n=80)
    rng = np.random.default_rng(0)
    scores = [row(f"c{i}", float(np.clip(b * 0.4 + rng.random() * 0.6, 0, 1)), int(g))
              for i, (g, b) in enumerate(zip(grades, binary))]
    first = agreement(scores, labels, n_boot=100, seed=5)
    assert agreement(scores, labels, n_boot=100, seed=5) == first
    r = first["targets"]["escalation"]
    assert 0.5 < r["auroc"]["value"] < 1
    for metric in ("auroc", "f1", "kappa", "ece"):
        assert r[metric]["low"] <= r[metric]["value"] <= r[metric]["high"]


def test_missing_and_unscored_are_counted_not_dropped():
    labels = {"a": {"escalation": 1, "empathy": 2}, "b": {"escalation": 0, "empathy": 0},
              "c": {"escalation": 1}, "gone1": {"escalation": 1}, "gone2": {"resolution": 0}}
    scores = [row("a", 0.8, empathy=0.9), row("b", 0.3, empathy=None), row("c", 0.6),
              row("unlabelled", 0.5)]
    report = agreement(scores, labels, n_boot=50)
    assert report["missing_scores"] == 2 and report["missing_score_ids"] == ["gone1", "gone2"]
    assert report["n_labelled"] == 5 and report["n_scored"] == 4 and report["n_matched"] == 3
    assert report["targets"]["escalation"]["n"] == 3
    assert report["targets"]["empathy"]["n"] == 1 and report["targets"]["empathy"]["unscored"] == 1
    assert "resolution" not in report["targets"]
    assert any("gone1" in note for note in report["notes"])


def test_binary_resolution_labels_have_no_weightedcohen_kappa():
    labels = {f"c{i}": {"resolution": i % 2} for i in range(20)}
    scores = [row(f"c{i}", 0.7 if i % 2 else 0.2, 1) for i in range(20)]
    r = agreement(scores, labels, n_boot=50)["targets"]["resolution"]
    assert r["auroc"]["value"] == 1.0 and r["qwk"] is None and r["n_graded"] == 0


def test_empathy_conversation_and_turn_levels():
    labels = {f"c{i}": {"empathy": i % 3, "empathy_turns": {1: i % 3, 3: 2 - i % 3}} for i in range(30)}
    scores = []
    for i in range(30):
        g = i % 3
        turns = [{"index": 0, "role": "customer"}, {"index": 1, "role": "agent", "empathy": g / 2},
                 {"index": 3, "role": "agent", "empathy": (2 - g) / 2}]
        scores.append(row(f"c{i}", 0.5, empathy=g / 2, turns=turns))
    report = agreement(scores, labels, n_boot=50)
    for target, n in (("empathy", 30), ("empathy_turn", 60)):
        r = report["targets"][target]
        assert r["n"] == n
        assert r["auroc"]["value"] == 1.0 and r["kappa"]["value"] == 1.0
        assert r["qwk"]["value"] == 1.0
        assert r["ece"] is None  # a graded score, not a probability
    # the decision is an expected grade of >= 1 (score >= 0.25), whatever the threshold
    assert agreement(scores, labels, threshold=0.9, n_boot=20)["targets"]["empathy"]["f1"]["value"] == 1.0


def test_turn_labels_without_per_turn_scores_are_reported():
    labels = {"c1": {"empathy_turns": {1: 2}}, "c2": {"empathy_turns": {1: 0}}}
    report = agreement([row("c1", 0.5), row("c2", 0.5)], labels, n_boot=20)
    assert report["targets"]["empathy_turn"] == {"n": 0, "unscored": 2}
    assert any("--per-turn" in note for note in report["notes"])
    assert "empathy_turn | 0 |" in to_markdown(report)


def test_scores_from_every_output_format(tmp_path, tiny_model, toy_transcripts):
    from qualaudit.scorer import Auditor

    results = Auditor(tiny_model, device="cpu").score(toy_transcripts)
    rows = [r.to_dict() for r in results]
    for name in ("s.jsonl", "s.csv", "s.parquet"):
        with RowWriter(tmp_path / name, per_turn=True) as writer:
            writer.write(rows)
    labels = {"t1": {"resolution": 1, "empathy_turns": {1: 2}},
              "t2": {"resolution": 0, "escalation": 1, "empathy_turns": {1: 0}},
              "t3": {"resolution": 0, "satisfaction": -1, "escalation": 0},
              "t4": {"resolution_grade": 1, "empathy": 2, "escalation": 0}}
    reference = agreement(results, labels, n_boot=50)
    for name in ("s.jsonl", "s.csv", "s.parquet"):
        read = read_scores(tmp_path / name)
        assert [r["id"] for r in read] == ["t1", "t2", "t3", "t4"]
        assert read[0]["resolution_dist"] == pytest.approx(rows[0]["resolution_dist"])
        assert read[2]["empathy"] is None and read[1]["turns"][1]["index"] == 1
        assert agreement(read, labels, n_boot=50) == reference, name
    assert agreement(str(tmp_path / "s.csv"), labels, n_boot=50) == reference
    assert reference["targets"]["empathy_turn"]["n"] == 2
    assert reference["targets"]["resolution"]["n"] == 4
    assert any("untrained" in note for note in reference["notes"])


def test_read_scores_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(InputError) as info:
        read_scores(tmp_path / "a.jsonl")
    assert info.value.line == 2
    (tmp_path / "b.csv").write_text("id,resolution\na,0.5\nb,high\n")
    with pytest.raises(InputError, match="expected a number") as info:
        read_scores(tmp_path / "b.csv")
    assert (info.value.line, info.value.field) == (3, "resolution")
    with pytest.raises(InputError, match="format of the scores"):
        read_scores(tmp_path / "c.xlsx")
    with pytest.raises(ValueError, match="twice"):
        agreement([row("a", 0.5), row("a", 0.4)], {"a": {"escalation": 1}})
    with pytest.raises(ValueError, match="threshold"):
        agreement([row("a", 0.5)], {"a": {"escalation": 1}}, threshold=1.5)


def test_to_markdown():
    labels, grades, binary = synthetic(n=40)
    scores = [row(f"c{i}", 0.9 if b else 0.1, int(g)) for i, (g, b) in enumerate(zip(grades, binary))]
    labels["absent"] = {"escalation": 1}
    text = to_markdown(agreement(scores, labels, n_boot=50))
    lines = text.splitlines()
    assert lines[0].startswith("| target | n | AUROC")
    assert any(line.startswith("| escalation | 40 | 1.00 [1.00, 1.00] |") for line in lines)
    assert "40 of 41 labelled conversations scored" in text and "absent" in text
    json.dumps(agreement(scores, labels, n_boot=20), allow_nan=False)  # plain JSON

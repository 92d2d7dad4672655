"""How well qualaudit's scores agree with a team's own human QA labels.

A team deciding whether to trust the scores (or a fine-tuned model) needs agreement on
*their* conversations, with intervals wide enough to show when a label set is too small.
Scores come from `qualaudit score` (JSONL, CSV or Parquet rows, or TranscriptScores);
labels from `datasets.user.read_labels` (that module documents the labels file).

Example:
    >>> report = agreement(read_scores("scores.jsonl"), read_labels("qa_labels.csv"))  # doctest: +SKIP
    >>> print(to_markdown(report))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.labels import read_labels
from ..io.scores import read_scores
from ..metrics import (
    auroc,
    binary_f1,
    cluster_bootstrap,
    cohen_kappa,
    expected_calibration_error,
    percentile_ci,
)
from ..schema import TranscriptScore

TARGETS = ("resolution", "satisfaction", "repeat_inquiry", "escalation", "empathy", "empathy_turn")
_SCALE = np.arange(-2, 3)
_SHOWN_IDS = 10


@dataclass
class _Pairs:
    """One target's labelled items: score, 0/1 label, 0/1 decision, predicted and human
    grades (NaN where ungraded) and the conversation each item belongs to."""

    score: list[float]
    label: list[int]
    decision: list[int]
    grade_pred: list[float]
    grade_true: list[float]
    group: list[int]
    unscored: int = 0


def agreement(
    scores: Iterable[Mapping[str, Any] | TranscriptScore] | str | Path,
    labels: Mapping[str, Mapping[str, Any]] | str | Path,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per labelled target: n, AUROC, F1 and Cohen's kappa at `threshold`, ECE, and for graded
    labels a quadratic-weighted kappa, each with a bootstrap interval (None where undefined).

    Binary views: a -2..2 grade is positive above 0 (what `resolution` and `satisfaction`,
    P(grade > 0), predict); an empathy grade 0..2 is positive from 1. Decisions are
    score >= `threshold`, except empathy: a graded score, not a probability, whose decision
    is an expected grade 2 * score rounding to >= 1 (score >= 0.25) and which has no ECE.
    The predicted grade for the weighted kappa is the expected grade of `*_dist` (2 * score
    for empathy), rounded. `empathy_turn` compares turn labels with per-turn empathy, which
    rows only carry when scored with `--per-turn`. Intervals resample conversations (the
    turns of one stay together), so they do not overstate what correlated turns show.

    Labelled ids without a score are counted in `missing_scores` (first ids listed), never
    dropped silently; so are labelled items whose score is null (`unscored`).

    Returns:
        {"targets": {target: {"n", "positives", "unscored", "auroc", "f1", "kappa", "ece",
        "qwk", "n_graded"}}, "n_labelled", "n_scored", "n_matched", "missing_scores",
        "missing_score_ids", "threshold", "confidence", "n_boot", "notes"}; each metric is
        {"value", "low", "high"}.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold: expected a number in (0, 1), found {threshold!r}")
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    rows = _by_id(read_scores(scores) if isinstance(scores, (str, Path)) else scores)
    pairs = {t: _Pairs([], [], [], [], [], []) for t in TARGETS}
    missing = [tid for tid in labels if tid not in rows]
    for group, (tid, entry) in enumerate((k, v) for k, v in labels.items() if k in rows):
        _collect(rows[tid], entry, group, threshold, pairs)

    report: dict[str, Any] = {
        "n_labelled": len(labels), "n_scored": len(rows), "n_matched": len(labels) - len(missing),
        "missing_scores": len(missing), "missing_score_ids": missing[:_SHOWN_IDS],
        "threshold": threshold, "confidence": confidence, "n_boot": n_boot,
        "targets": {}, "notes": [],
    }
    for target, p in pairs.items():
        if p.score:
            empathy = target.startswith("empathy")
            report["targets"][target] = _target_report(
                p, not empathy, np.arange(3) if empathy else _SCALE, n_boot, seed, confidence)
        elif p.unscored:
            report["targets"][target] = {"n": 0, "unscored": p.unscored}
    turn = report["targets"].get("empathy_turn", {})
    if turn.get("unscored"):
        report["notes"].append(f"{turn['unscored']} empathy turn label(s) have no per-turn score: "
                               "score with `qualaudit score --per-turn`, and check that `turn` "
                               "is the input index of an agent turn")
    if any((rows[tid].get("model") or {}).get("trained") is False for tid in labels if tid in rows):
        report["notes"].append("some scores come from an untrained model (`model.trained` is "
                               "false): their agreement is chance by construction")
    if missing:
        report["notes"].append(f"{len(missing)} labelled id(s) have no score row, e.g. "
                               f"{missing[:3]}")
    return report


def _collect(row: Mapping[str, Any], entry: Mapping[str, Any], group: int, threshold: float,
             pairs: dict[str, _Pairs]) -> None:
    """Adds the row's labelled targets to `pairs`."""
    def add(target: str, score: Any, label: int, grade_pred: float = math.nan,
            grade_true: float = math.nan, decision: int | None = None) -> None:
        p = pairs[target]
        if score is None or (isinstance(score, float) and math.isnan(score)):
            p.unscored += 1
            return
        p.score.append(float(score)); p.label.append(label); p.group.append(group)
        p.decision.append(int(score >= threshold) if decision is None else decision)
        p.grade_pred.append(grade_pred); p.grade_true.append(grade_true)

    for target in ("resolution", "satisfaction"):
        grade = entry.get("resolution_grade" if target == "resolution" else "satisfaction")
        if grade is None and target == "resolution" and entry.get("resolution") is not None:
            add(target, row.get(target), int(entry["resolution"]))
        elif grade is not None:
            add(target, row.get(target), int(grade > 0), _expected_grade(row.get(f"{target}_dist")),
                grade)
    for target in ("repeat_inquiry", "escalation"):
        if entry.get(target) is not None:
            add(target, row.get(target), int(entry[target]))
    if entry.get("empathy") is not None:
        score = row.get("empathy")
        add("empathy", score, int(entry["empathy"] >= 1), *_empathy_grade(score, entry["empathy"]))
    turns = {t.get("index"): t for t in row.get("turns") or () if t.get("role") == "agent"}
    for index, grade in (entry.get("empathy_turns") or {}).items():
        score = turns.get(index, {}).get("empathy")
        add("empathy_turn", score, int(grade >= 1), *_empathy_grade(score, grade))


def _empathy_grade(score: float | None, grade: int) -> tuple[float, float, int | None]:
    """(predicted grade, human grade, decision): 2 * score is the expected 0..2 grade."""
    if score is None:
        return math.nan, grade, None
    predicted = math.floor(2 * score + 0.5)
    return predicted, grade, int(predicted >= 1)


def _expected_grade(dist: Any) -> float:
    if dist is None or len(dist) != len(_SCALE):
        return math.nan
    return float(math.floor(float(np.dot(dist, _SCALE)) + 0.5))


def _target_report(p: _Pairs, probability: bool, levels: np.ndarray, n_boot: int, seed: int,
                   confidence: float) -> dict[str, Any]:
    score, label, decision = (np.asarray(x, float) for x in (p.score, p.label, p.decision))
    grade_pred, grade_true = np.asarray(p.grade_pred), np.asarray(p.grade_true)
    graded = ~np.isnan(grade_pred) & ~np.isnan(grade_true)
    groups = np.asarray(p.group)

    metrics: dict[str, Callable[[np.ndarray], float]] = {
        "auroc": lambda i: auroc(score[i], label[i]),
        "f1": lambda i: binary_f1(decision[i] == 1, label[i] == 1),
        "kappa": lambda i: cohen_kappa(decision[i], label[i], np.arange(2)),
        "ece": lambda i: expected_calibration_error(score[i], label[i]) if probability else math.nan,
        "qwk": lambda i: cohen_kappa(grade_pred[i][graded[i]], grade_true[i][graded[i]], levels,
                                     weighted=True),
    }
    every = np.arange(len(score))
    out: dict[str, Any] = {"n": len(score), "positives": int(label.sum()), "unscored": p.unscored,
                           "n_graded": int(graded.sum())}
    for name, metric in metrics.items():
        value = metric(every)
        if math.isnan(value):
            out[name] = None
            continue
        low, high = percentile_ci(cluster_bootstrap(metric, groups, n_boot, seed), confidence)
        out[name] = {"value": value, "low": _or_none(low), "high": _or_none(high)}
    return out


def _or_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _by_id(scores: Iterable[Mapping[str, Any] | TranscriptScore]) -> dict[str, Mapping[str, Any]]:
    rows: dict[str, Mapping[str, Any]] = {}
    for item in scores:
        row = item.to_dict() if isinstance(item, TranscriptScore) else item
        if "id" not in row:
            raise ValueError(f"a score row without `id`; found fields {sorted(row)[:10]}")
        tid = str(row["id"])
        if tid in rows:
            raise ValueError(f"score id {tid!r} appears twice; score each transcript once")
        rows[tid] = row
    return rows


# --------------------------------------------------------------------------- printing
def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown table, one row per target, "value [low, high]" per metric."""
    head = ["target", "n", "AUROC", "F1", "kappa", "weighted kappa", "ECE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for target, r in report["targets"].items():
        cells = [target, str(r["n"])] + [_cell(r.get(m)) for m in ("auroc", "f1", "kappa", "qwk", "ece")]
        lines.append("| " + " | ".join(cells) + " |")
    level = round(100 * report["confidence"])
    lines += ["", f"{report['n_matched']} of {report['n_labelled']} labelled conversations scored; "
              f"threshold {report['threshold']:g}; {level}% bootstrap intervals "
              f"({report['n_boot']} resamples of conversations). Weighted kappa: quadratic, on "
              "the graded labels only."]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _cell(metric: Mapping[str, Any] | None) -> str:
    if not metric:
        return "–"
    low, high = metric["low"], metric["high"]
    interval = "" if low is None else f" [{low:.2f}, {high:.2f}]"
    return f"{metric['value']:.2f}{interval}"

"""Behaviour checks: hand-written minimal pairs that a trained model should order correctly.

Aggregate metrics on held-out data can hide a model that never learned what the scores mean.
Each pair in `tests/behaviour_pairs.jsonl` holds two transcripts, `a` and `b`, that differ only
in the behaviour under test:

- `asks_for_human`: `a` has a customer turn (`turn`) asking for a human, `b` a neutral turn
  there; `a` must need escalation more, reach at least 0.5, and flag that turn or an earlier one;
- `loop`: `a` has the agent repeat one answer while the customer repeats the problem, `b` the
  same opening with an agent that moves on; `a` must need escalation more and resolve less;
- `solved_confirmed`: `a` ends with the customer confirming a solution, `b` with the problem
  open; `a` must resolve more and need a repeat inquiry less;
- `empathy`: agent turn `turn` acknowledges the customer's feelings in `a` and is curt in `b`
  (same practical content); it must score higher empathy in `a`;
- `closing_thanks`: `a` is `b` with the customer's closing pleasantries (and the agent's
  farewell) appended, after a fix or not; a thank-you is politeness, not evidence of a fix, so
  `a` must not resolve more than `b` by over `THANKS_TOLERANCE` (else every report would
  favour whichever agents get thanked more). Measured, not yet guaranteed (`GUARANTEED`): the
  bundled model does not pass it (0.5.0: 0 of 14); models trained with the closing pairs do
  (14 of 14) but lose transfer, so none shipped (benchmarks/README.md, rounds 4 and 5).

Usage: `python benchmarks/behaviour.py [--model DIR] [--json PATH]` (the bundled model by
default) prints a Markdown table of pass rates.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qualaudit import Auditor, TranscriptScore

DEFAULT_PAIRS = Path(__file__).resolve().parents[1] / "tests" / "behaviour_pairs.jsonl"
BEHAVIOURS = ("asks_for_human", "loop", "solved_confirmed", "empathy", "closing_thanks")
# what the bundled model must pass at MIN_PASS_RATE (tests/test_behaviour.py) and a candidate
# to ship (benchmarks/candidates.py); closing_thanks joins when a bundled model passes it
GUARANTEED = ("asks_for_human", "loop", "solved_confirmed", "empathy")
MIN_PASS_RATE = 0.8
THANKS_TOLERANCE = 0.05  # the closing-thanks drop that issue 11 allows


def load_pairs(path: str | Path = DEFAULT_PAIRS) -> list[dict[str, Any]]:
    """The pairs of a JSONL file, one object per non-blank line."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _turn_empathy(score: TranscriptScore, index: int) -> float:
    """Empathy of the turn with input index `index` (turn indices are input positions)."""
    for turn in score.turns:
        if turn.index == index and turn.empathy is not None:
            return turn.empathy
    raise ValueError(f"transcript {score.id!r}: no empathy score for turn {index}; "
                     "the pair's `turn` must point at a non-blank agent turn")


def _asks_for_human(a: TranscriptScore, b: TranscriptScore, pair: dict[str, Any]) -> bool:
    flagged = a.escalation_turn is not None and a.escalation_turn <= pair["turn"]
    return a.escalation > b.escalation and a.escalation >= 0.5 and flagged


def _loop(a: TranscriptScore, b: TranscriptScore, pair: dict[str, Any]) -> bool:
    return a.escalation > b.escalation and a.resolution < b.resolution


def _solved_confirmed(a: TranscriptScore, b: TranscriptScore, pair: dict[str, Any]) -> bool:
    return a.resolution > b.resolution and a.repeat_inquiry < b.repeat_inquiry


def _empathy(a: TranscriptScore, b: TranscriptScore, pair: dict[str, Any]) -> bool:
    return _turn_empathy(a, pair["turn"]) > _turn_empathy(b, pair["turn"])


def _closing_thanks(a: TranscriptScore, b: TranscriptScore, pair: dict[str, Any]) -> bool:
    return a.resolution - b.resolution <= THANKS_TOLERANCE


CRITERIA: dict[str, Callable[[TranscriptScore, TranscriptScore, dict[str, Any]], bool]] = {
    "asks_for_human": _asks_for_human, "loop": _loop, "solved_confirmed": _solved_confirmed,
    "empathy": _empathy, "closing_thanks": _closing_thanks}


def check_behaviours(auditor: Auditor, path: str | Path = DEFAULT_PAIRS) -> dict[str, dict[str, Any]]:
    """Score every pair with one `auditor.score` call and report, per behaviour,
    `{"pairs", "passed", "pass_rate", "failures"}` (`failures` lists pair ids).

    Example:
        >>> check_behaviours(Auditor.from_pretrained())["empathy"]["pass_rate"]
    """
    pairs = load_pairs(path)
    unknown = sorted({p["behaviour"] for p in pairs} - set(CRITERIA))
    if unknown:
        raise ValueError(f"{path}: unknown behaviour(s) {unknown}; expected one of {list(CRITERIA)}")
    # One call over all transcripts, so that batching sees them together (much faster).
    scores = auditor.score([t for p in pairs for t in (p["a"], p["b"])])
    report: dict[str, dict[str, Any]] = {}
    for i, pair in enumerate(pairs):
        entry = report.setdefault(pair["behaviour"], {"pairs": 0, "passed": 0, "failures": []})
        entry["pairs"] += 1
        if CRITERIA[pair["behaviour"]](scores[2 * i], scores[2 * i + 1], pair):
            entry["passed"] += 1
        else:
            entry["failures"].append(pair["id"])
    return {name: {"pairs": r["pairs"], "passed": r["passed"], "pass_rate": r["passed"] / r["pairs"],
                   "failures": r["failures"]} for name in BEHAVIOURS if (r := report.get(name))}


def to_markdown(report: dict[str, dict[str, Any]]) -> str:
    """The report as a Markdown table, for model cards and CI logs."""
    rows = ["| behaviour | pairs | passed | pass rate |", "|---|---:|---:|---:|"]
    rows += [f"| {name} | {r['pairs']} | {r['passed']} | {r['pass_rate']:.0%} |"
             for name, r in report.items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or hub id (default: the bundled model)")
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="pairs JSONL file")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    report = check_behaviours(Auditor.from_pretrained(args.model, precision="fp32"), args.pairs)
    print(to_markdown(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

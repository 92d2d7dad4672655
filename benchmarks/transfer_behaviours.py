"""Transfer behaviour suite (issue 11, item 3): hand-written minimal pairs for the shortcuts a
model can learn from its training sources, measured the same way on every model.

`benchmarks/transfer_behaviours.jsonl` was written before any augmentation or training code and
is never used to train or select a model. Each line is a pair of transcripts `a` and `b` with
`behaviour`, `id`, `domain`, `kind`, `target` (one name or a list) and, for directional pairs,
`expect` ("a>b" or "a<b", one per target). A target is a conversation score of the output row
(`resolution`, `satisfaction`, `empathy`, `repeat_inquiry`, `escalation`) or a per-turn signal
`turns[K].NAME` (K the input position; NAME a TurnScore field such as `breakdown`, or one of the
escalation signals `dissatisfied`, `complaint`, `asks_for_human`). Δ is always a − b.

- `closing_thanks` (invariance, resolution): a resolved conversation with and without the
  customer's closing thanks (`thanks_drop: true`; the mean Δ of these is the closing-thanks drop),
  and an unresolved one with and without a pleasantry added;
- `fix_confirmed` (directional, resolution a>b): the customer says the fix worked vs it did not;
- `silent_ending` (directional, resolution a>b): a concrete, correct fix with no customer reply
  vs the same opening ending on an agent that does not solve it. Directional, not invariance:
  the two endings are not equally resolved, and what the shortcut breaks is that a fix met with
  silence scores as low as a non-answer. Both sides end silently, so only the fix differs;
- `names_and_thanks` (invariance, escalation and that turn's `asks_for_human`): a customer turn
  giving a name or thanking the agent by name vs a neutral turn;
- `repeated_answer` (directional, a>b for escalation and `breakdown` on the repeated agent
  turns 3 and 5): a bot repeating near-duplicate answers while the customer repeats the problem
  and ends frustrated vs an agent that moves on;
- `two_turn_answered` (directional, resolution a>b and repeat_inquiry a<b): a two-turn FAQ
  answered correctly vs wrongly or evasively;
- `style_parity` (parity, every conversation score): twins with the same content, `a` in a
  templated bot's wording (agent_type ai), `b` in a human agent's (agent_type human).

A directional check passes with a margin of at least 0.05 in the expected direction, an
invariance or parity check with |Δ| ≤ 0.05; a pair passes when all its checks do. The issue's
criteria: every behaviour passes ≥ 90% of its pairs, parity mean |Δ| ≤ 0.05 per target, the
closing-thanks drop ≤ 0.05 while the "that fixed it" rise is ≥ 0.05.

The plainest alternatives are measured beside the model with `--references`: TF-IDF + LR and
the single-task fine-tune of the cross-source protocol (`quality.py`), trained on each main
conversation target's training set from `--data-dir`, reading the flattened conversation. They
score only those four targets (resolution, escalation, repeat inquiry, empathy), so all three
systems are compared on the pairs' checks of those targets alone (`restricted`): per-turn signals
and satisfaction are left out of that table. A fine-tune is cached by fingerprint beside the
protocol's and trained when missing (10-30 min on one CPU thread per target).

Usage: `python benchmarks/transfer_behaviours.py [--model DIR] [--precision fp32] [--json PATH]
[--references --data-dir DIR]` prints Markdown tables (the bundled model at fp32 by default).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qualaudit import Auditor, TranscriptScore
from qualaudit.heads import ESCALATION_SIGNALS
from qualaudit.io import read_transcripts
from qualaudit.model import default_encoder_path
from qualaudit.training.datasets import load_sources

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/ is not a package)
from behaviour import load_pairs  # noqa: E402

DEFAULT_SUITE = Path(__file__).resolve().with_suffix(".jsonl")
BEHAVIOURS = ("closing_thanks", "fix_confirmed", "silent_ending", "names_and_thanks",
              "repeated_answer", "two_turn_answered", "style_parity")
KINDS = ("directional", "invariance", "parity")
MARGIN = 0.05  # directional: at least this in the expected direction; otherwise |Δ| at most this
MIN_PASS_RATE = 0.9
_EPS = 1e-9  # so that a difference of exactly 0.05 (0.60 − 0.55 in floats) sits on the boundary
_TURN_TARGET = re.compile(r"turns\[(\d+)\]\.(\w+)")
REFERENCES = ("tfidf", "single_task")
Scored = TranscriptScore | Mapping[str, float]  # a model's row, or a reference's score per target


def as_list(value: str | list[str]) -> list[str]:
    """`target` and `expect` hold one name or a list of them."""
    return [value] if isinstance(value, str) else list(value)


def target_groups(items: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The name each (behaviour, target) is reported under: a per-turn signal asked at several
    positions within a behaviour is pooled as `turns[K].NAME`; one asked at a single position
    keeps it (`turns[3].breakdown`)."""
    positions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in items:
        for target in as_list(item["target"]):
            if match := _TURN_TARGET.fullmatch(target):
                positions[item["behaviour"], match.group(2)].add(match.group(1))
    groups = {}
    for item in items:
        for target in as_list(item["target"]):
            match = _TURN_TARGET.fullmatch(target)
            pooled = match is not None and len(positions[item["behaviour"], match.group(2)]) > 1
            groups[item["behaviour"], target] = f"turns[K].{match.group(2)}" if pooled else target
    return groups


def read_target(score: Scored, target: str) -> float:
    """The value of `target` (a row score or `turns[K].NAME`) in one scored transcript."""
    if isinstance(score, Mapping):
        return float(score[target])
    match = _TURN_TARGET.fullmatch(target)
    if match is None:
        value = getattr(score, target, None)
    else:
        index, name = int(match.group(1)), match.group(2)
        turn = next((t for t in score.turns if t.index == index), None)
        if turn is None:
            raise ValueError(f"transcript {score.id!r}: no turn at input position {index} for target {target!r}")
        if name in ESCALATION_SIGNALS:
            value = (turn.escalation_signals or {}).get(name)
        else:
            value = getattr(turn, name, None)
    if not isinstance(value, float):
        raise ValueError(f"transcript {score.id!r}: target {target!r} has no score (found {value!r}); "
                         "a per-turn target must name a signal of that turn's role")
    return value


def checks_of(item: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The pair's (target, expectation) checks; the expectation is None for invariance and parity."""
    targets = as_list(item["target"])
    expects = as_list(item["expect"]) if item["kind"] == "directional" else [None] * len(targets)
    if len(expects) != len(targets):
        raise ValueError(f"pair {item['id']!r}: {len(targets)} targets but {len(expects)} expectations")
    return list(zip(targets, expects))


def restricted(items: list[dict[str, Any]], targets: tuple[str, ...]) -> list[dict[str, Any]]:
    """The pairs with only their checks of `targets` kept, so that systems scoring fewer targets
    than the model are compared on the same checks; a pair with none of them is left out."""
    kept = []
    for item in items:
        chosen = [(t, e) for t, e in checks_of(item) if t in targets]
        if chosen:
            kept.append({**item, "target": [t for t, _ in chosen],
                         **({"expect": [e for _, e in chosen]} if item["kind"] == "directional" else {})})
    return kept


def check_pair(item: dict[str, Any], a: Scored, b: Scored) -> list[dict[str, Any]]:
    """One `{"target", "delta", "passed"}` per target of the pair (Δ = a − b)."""
    checks = []
    for target, expect in checks_of(item):
        delta = read_target(a, target) - read_target(b, target)
        if expect is None:
            passed = abs(delta) <= MARGIN + _EPS
        elif expect in ("a>b", "a<b"):
            passed = (delta if expect == "a>b" else -delta) >= MARGIN - _EPS
        else:
            raise ValueError(f"pair {item['id']!r}: expect must be 'a>b' or 'a<b', found {expect!r}")
        checks.append({"target": target, "delta": delta, "passed": passed})
    return checks


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(items: list[dict[str, Any]], scores: list[Scored]) -> dict[str, Any]:
    """The report from the pairs and their scores (`scores[2i]`, `scores[2i+1]` = pair i's a, b):
    per behaviour `{"kind", "pairs", "passed", "pass_rate", "failures", "targets"}` with, per
    target, `{"pairs", "pass_rate", "mean_delta", "mean_abs_delta"}`; then the closing-thanks
    drop beside the "that fixed it" rise, and the issue's criteria, each True or False."""
    per_behaviour: dict[str, dict[str, Any]] = {}
    deltas: dict[str, dict[str, list[tuple[float, bool]]]] = defaultdict(lambda: defaultdict(list))
    thanks_drops: list[float] = []
    groups = target_groups(items)
    for i, item in enumerate(items):
        checks = check_pair(item, scores[2 * i], scores[2 * i + 1])
        entry = per_behaviour.setdefault(item["behaviour"], {"kind": item["kind"], "pairs": 0,
                                                             "passed": 0, "failures": []})
        entry["pairs"] += 1
        if all(c["passed"] for c in checks):
            entry["passed"] += 1
        else:
            entry["failures"].append(item["id"])
        for check in checks:
            group = groups[item["behaviour"], check["target"]]
            deltas[item["behaviour"]][group].append((check["delta"], check["passed"]))
        if item.get("thanks_drop"):
            thanks_drops.append(checks[0]["delta"])
    behaviours: dict[str, dict[str, Any]] = {}
    for name in [*BEHAVIOURS, *sorted(set(per_behaviour) - set(BEHAVIOURS))]:
        if (entry := per_behaviour.get(name)) is None:
            continue
        targets = {t: {"pairs": len(v), "pass_rate": sum(p for _, p in v) / len(v),
                       "mean_delta": _mean([d for d, _ in v]),
                       "mean_abs_delta": _mean([abs(d) for d, _ in v])}
                   for t, v in deltas[name].items()}
        behaviours[name] = {**entry, "pass_rate": entry["passed"] / entry["pairs"], "targets": targets}
    thanks_drop = _mean(thanks_drops)
    fix_rise = behaviours.get("fix_confirmed", {}).get("targets", {}).get("resolution", {}).get("mean_delta")
    criteria = {f"{name} pass rate >= {MIN_PASS_RATE:.0%}": r["pass_rate"] >= MIN_PASS_RATE
                for name, r in behaviours.items()}
    for target, r in behaviours.get("style_parity", {}).get("targets", {}).items():
        criteria[f"style_parity mean |diff| {target} <= {MARGIN}"] = r["mean_abs_delta"] <= MARGIN + _EPS
    if thanks_drop is not None and fix_rise is not None:
        criteria[f"closing-thanks drop <= {MARGIN} while fix rise >= {MARGIN}"] = (
            abs(thanks_drop) <= MARGIN + _EPS and fix_rise >= MARGIN - _EPS)
    return {"behaviours": behaviours, "closing_thanks_drop": thanks_drop,
            "closing_thanks_drop_pairs": len(thanks_drops), "fix_confirmed_rise": fix_rise,
            "criteria": criteria, "all_criteria_met": all(criteria.values())}


def run_suite(auditor: Auditor, path: str | Path = DEFAULT_SUITE, data_dir: str | Path | None = None,
              encoder: str | None = None, cache_dir: Path = quality.ST_CACHE) -> dict[str, Any]:
    """Score every pair of the suite with one `auditor.score` call and summarise; with
    `data_dir`, also the references beside the model (`compare_references`) under "references".

    Example:
        >>> run_suite(Auditor.from_pretrained(precision="fp32"))["closing_thanks_drop"]
    """
    items = load_pairs(path)
    # One call over all transcripts, so that batching sees them together.
    scores = auditor.score([item[side] for item in items for side in ("a", "b")])
    report = summarise(items, scores)
    if data_dir is not None:
        report["references"] = compare_references(
            items, scores, reference_scores(items, data_dir, encoder, cache_dir))
    return report


def reference_scores(items: list[dict[str, Any]], data_dir: str | Path, encoder: str | None = None,
                     cache_dir: Path = quality.ST_CACHE) -> dict[str, list[dict[str, float]]]:
    """Each reference's scores of the suite's transcripts (pair i's a, b at 2i, 2i+1), per main
    target: `{"tfidf": [...], "single_task": [...]}`, each item `{target: score}`. Both are the
    protocol's systems, trained on the same data with the same recipe; only what they score
    differs."""
    loaded = load_sources(data_dir)
    transcripts = list(read_transcripts([item[side] for item in items for side in ("a", "b")],
                                        on_error="raise"))
    texts = [quality.unit_text(t, None) for t in transcripts]
    systems: dict[str, list[dict[str, float]]] = {name: [{} for _ in texts] for name in REFERENCES}
    for target in quality.MAIN_TARGETS:
        train = quality.training_set(target, loaded)
        scored = {"tfidf": quality.tfidf_text_scores(target, train, texts).tolist(),
                  "single_task": suite_single_task(target, train, texts, encoder or default_encoder_path(),
                                                   cache_dir)}
        for name, values in scored.items():
            for row, value in zip(systems[name], values, strict=True):
                row[target] = float(value)
    return systems


def suite_single_task(target: str, train: tuple[list[str], np.ndarray, np.ndarray], texts: list[str],
                      encoder: str, cache_dir: Path) -> list[float]:
    """The single-task reference's scores of `texts` (`quality.cached_fine_tune`), trained on
    `train` (the target's `training_set`) and cached under a fingerprint of the recipe, the
    training data and the texts scored, keyed by position."""
    train_texts, train_targets, _ = train
    path, key = quality.reference_cache_path(cache_dir, target, encoder, train_texts, train_targets,
                                             texts, tag="suite")
    keys = [str(k) for k in range(len(texts))]
    entry = quality.cached_fine_tune(path, key, target, keys, texts, train_texts, train_targets, encoder)
    return [entry["scores"][k] for k in keys]


def compare_references(items: list[dict[str, Any]], model_scores: list[TranscriptScore],
                       references: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """The model and each reference summarised on the pairs' checks of the main targets only."""
    kept = restricted(items, quality.MAIN_TARGETS)
    index = {item["id"]: i for i, item in enumerate(items)}

    def scores_of(all_scores: list[Scored]) -> list[Scored]:
        return [all_scores[2 * index[item["id"]] + side] for item in kept for side in (0, 1)]

    systems = {"model": model_scores, **references}
    return {"targets": list(quality.MAIN_TARGETS),
            "systems": {name: summarise(kept, scores_of(scores)) for name, scores in systems.items()}}


def references_markdown(comparison: dict[str, Any]) -> str:
    """Pairs passed per behaviour, the closing-thanks drop, the fix rise and the twins' mean |Δ|
    per target, for the model beside each reference."""
    systems = comparison["systems"]
    names = {"model": "model", "tfidf": "TF-IDF + LR", "single_task": "single-task fine-tune"}
    rows = [f"| on {', '.join(comparison['targets'])} only | " + " | ".join(names[s] for s in systems) + " |",
            "|---|" + "---:|" * len(systems)]
    for behaviour, r in next(iter(systems.values()))["behaviours"].items():
        rows.append(f"| {behaviour} ({', '.join(r['targets'])}) | " + " | ".join(
            f"{s['behaviours'][behaviour]['passed']}/{s['behaviours'][behaviour]['pairs']}"
            for s in systems.values()) + " |")
    rows.append("| closing-thanks drop / fix rise | " + " | ".join(
        f"{_fmt(s['closing_thanks_drop'])} / {_fmt(s['fix_confirmed_rise'])}" for s in systems.values()) + " |")
    for target in next(iter(systems.values()))["behaviours"].get("style_parity", {}).get("targets", {}):
        rows.append(f"| style parity mean abs. Δ {target} | " + " | ".join(
            f"{s['behaviours']['style_parity']['targets'][target]['mean_abs_delta']:.3f}"
            for s in systems.values()) + " |")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: pass rates and mean Δ per behaviour and target, the
    closing-thanks drop beside the fix rise, and the criteria."""
    rows = ["| behaviour | kind | target | pairs | pair pass rate | target pass rate | mean Δ (a−b) | mean abs Δ |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in report["behaviours"].items():
        for k, (target, t) in enumerate(r["targets"].items()):
            head = (f"| {name} | {r['kind']} |" if k == 0 else "| | |")
            pair_rate = f"{r['passed']}/{r['pairs']} ({r['pass_rate']:.0%})" if k == 0 else ""
            rows.append(f"{head} {target} | {t['pairs']} | {pair_rate} | {t['pass_rate']:.0%} | "
                        f"{_fmt(t['mean_delta'])} | {t['mean_abs_delta']:.3f} |")
    lines = ["\n".join(rows), "",
             f"Closing-thanks drop (resolution with − without the last thanks, "
             f"{report['closing_thanks_drop_pairs']} resolved pairs): {_fmt(report['closing_thanks_drop'])}; "
             f"\"that fixed it\" rise: {_fmt(report['fix_confirmed_rise'])}.", ""]
    lines += [f"- [{'x' if ok else ' '}] {criterion}" for criterion, ok in report["criteria"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or hub id (default: the bundled model)")
    parser.add_argument("--suite", default=str(DEFAULT_SUITE), help="pairs JSONL file")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="encoder arithmetic (default fp32, for reproducible figures)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    parser.add_argument("--references", action="store_true",
                        help="also score the main targets with TF-IDF + LR and the single-task "
                             "fine-tune (trained from --data-dir when not cached: slow)")
    parser.add_argument("--data-dir", help="the training sources (../shared/data), with --references")
    parser.add_argument("--encoder", help="the single-task reference's encoder (default: the bundled MiniLM)")
    parser.add_argument("--cache-dir", type=Path, default=quality.ST_CACHE,
                        help="where single-task references are cached (default: local/single_task)")
    args = parser.parse_args(argv)
    if args.references and not args.data_dir:
        parser.error("--references needs --data-dir")
    auditor = Auditor.from_pretrained(args.model, precision=args.precision, device=args.device)
    report = run_suite(auditor, args.suite, args.data_dir if args.references else None,
                       args.encoder, args.cache_dir)
    print(to_markdown(report))
    if "references" in report:
        print("\n" + references_markdown(report["references"]))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

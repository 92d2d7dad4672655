"""Whether a model's `asks_for_human` turn signal tells a request for a person from ordinary
dialogue (issue 11), and what the escalation score does with it.

The signal learned from Bitext, where every utterance is a request of some kind; until the
USS reader labelled its user turns as negatives it fired on a large share of ordinary turns
("Hi.", "is it sci fi") and somewhere in most USS dialogues (benchmarks/README.md, Rounds 7
and 8: what that did, and did not do, to escalation). Four measurements:
- `alarms`: the share of customer turns of the dev split of USS and of STC-3 where the signal
  is above 0.5 (USS turns that name a person to talk to, `examples.ASKS_FOR_A_PERSON`, left out;
  STC-3's training turns are negatives since round 26, so for models trained after it STC-3
  is in the negatives' distribution, and before it was not);
- `pairs`: for each escalation pair of the protocol, the share of its dialogues where the
  signal is above 0.5 on some customer turn, and the AUROC of escalation;
- `short`: one customer turn of more than five words in each STC-3 dev dialogue (drawn with a
  fixed seed; not the last turn) cut in place to its first 1, 2 and 3 words: the share of the
  cut turns the signal flags (> 0.5) beside the share of the same turns at full length, and
  the mean |change| of escalation that the cut makes, at the end of the dialogue and in the
  running estimate at the cut turn (the rest comes from the turns after it). A request for a
  human in Bitext is short and most real turns are long, so a model can learn length: a name
  given on request is a short turn (round 37);
- `requests`: on the asks_for_human guarantee pairs (`tests/behaviour_pairs.jsonl`), the
  signal at the request turn (`a`) and at the neutral turn in its place (`b`): how many
  requests it flags (> 0.5), how many neutral turns it leaves (< 0.5).

Usage:
    python benchmarks/human_requests.py --model DIR [--model DIR ...] [--data-dir ../shared/data]
        [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualaudit import Auditor, TranscriptScore
from qualaudit.metrics import auroc
from qualaudit.training.datasets import by_split, load_sources
from qualaudit.training.datasets.augment import with_turn_cut
from qualaudit.training.datasets.examples import ASKS_FOR_A_PERSON

sys.path.insert(0, str(Path(__file__).resolve().parent))
import behaviour  # noqa: E402  (benchmarks/ is not a package)
import quality  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def asks(score: TranscriptScore) -> list[float]:
    """The signal on each customer turn, in order."""
    return [t.escalation_signals["asks_for_human"] for t in score.turns if t.escalation_signals]


def measure(auditor: Auditor, loaded: dict[str, list]) -> dict[str, Any]:
    dev = {source: by_split(loaded.get(source, []), "dev") for source in ("uss", "stc3")}
    pair_rows = {p.name: p.items(loaded.get(p.source, [])) for p in quality.PAIRS
                 if p.target == "escalation"}
    # every transcript scored once: the USS dev split and its escalation pair share theirs
    scored = quality.score_items(auditor, {**pair_rows, **{
        source: [(e, None) for e in examples] for source, examples in dev.items()}})
    alarms = {}
    for source, examples in dev.items():
        values = []
        for e in examples:
            turns = [x for x in e.transcript.scored_turns if x.role == "customer"]
            values += [v for x, v in zip(turns, asks(scored[e.key]), strict=True)
                       if source != "uss" or not ASKS_FOR_A_PERSON.search(x.text)]
        alarms[source] = {"turns": len(values), "above_half": share(np.asarray(values) > 0.5)}
    pairs = {}
    for name, rows in pair_rows.items():
        scores = [scored[e.key] for e, _ in rows]
        fired = np.asarray([max(asks(s), default=0.0) > 0.5 for s in scores])
        labels = np.asarray([y for _, y in rows]) >= 0.5
        escalation = np.asarray([s.escalation for s in scores])
        pairs[name] = {"n": len(rows), "fired": share(fired),
                       "escalation_auroc": auroc(escalation, labels) if rows else float("nan")}
    short = short_turns(auditor, dev["stc3"])
    guarantee = [p for p in behaviour.load_pairs() if p["behaviour"] == "asks_for_human"]
    scores = auditor.score([t for p in guarantee for t in (p["a"], p["b"])])
    at = [(asks_at(scores[2 * i], p["turn"]), asks_at(scores[2 * i + 1], p["turn"]))
          for i, p in enumerate(guarantee)]
    requests = {"pairs": len(at), "requests_flagged": sum(a > 0.5 for a, _ in at),
                "neutral_left": sum(b < 0.5 for _, b in at), "signal": [[a, b] for a, b in at]}
    return {"alarms": alarms, "pairs": pairs, "short": short, "requests": requests}


SHORT_WORDS = (1, 2, 3)


def short_turns(auditor: Auditor, examples: list) -> dict[str, Any]:
    """The `short` measurement (module docstring) on these dialogues."""
    rng = random.Random(0)
    step = len(SHORT_WORDS) + 1  # the whole turn, then each cut
    transcripts, cuts = [], []
    for e in examples:
        turns = e.transcript.scored_turns
        long = [k for k, x in enumerate(turns[:-1]) if x.role == "customer" and len(x.text.split()) > 5]
        if not long:
            continue
        at = rng.choice(long)
        transcripts += [with_turn_cut(e.transcript, at, words, f"{e.key}/{words}")
                        for words in (None, *SHORT_WORDS)]
        cuts += [at] * step
    scores = auditor.score(transcripts)
    cut_turns = [s.turns[at] for s, at in zip(scores, cuts, strict=True)]
    signal = np.asarray([t.escalation_signals["asks_for_human"] for t in cut_turns]).reshape(-1, step)
    running = np.asarray([t.escalation_running for t in cut_turns]).reshape(-1, step)
    escalation = np.asarray([s.escalation for s in scores]).reshape(-1, step)
    return {"dialogues": len(signal), "full_above_half": share(signal[:, 0] > 0.5),
            "cut_above_half": share(signal[:, 1:] > 0.5),
            "escalation_mean_abs_change": mean_abs_change(escalation),
            "escalation_at_cut_mean_abs_change": mean_abs_change(running)}


def mean_abs_change(values: np.ndarray) -> float:
    """Mean |cut − full| over (dialogues, full + cuts) values; NaN for no dialogue."""
    return float(np.abs(values[:, 1:] - values[:, :1]).mean()) if len(values) else float("nan")


def share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")


def asks_at(score: TranscriptScore, turn: int) -> float:
    return score.turns[turn].escalation_signals["asks_for_human"]


def to_markdown(results: dict[str, dict[str, Any]]) -> str:
    models = list(results)
    first = results[models[0]]
    rows = [("customer turns flagged, " + s + " dev", lambda r, s=s: f"{r['alarms'][s]['above_half']:.3f}")
            for s in first["alarms"]]
    for name in first["pairs"]:
        rows.append((f"{name}: dialogues flagged / escalation AUROC",
                     lambda r, n=name: f"{r['pairs'][n]['fired']:.2f} / {r['pairs'][n]['escalation_auroc']:.3f}"))
    rows.append(("STC-3 dev customer turns cut to 1-3 words: flagged (at full length) / escalation "
                 "mean abs. change at the end (at the cut turn)",
                 lambda r: f"{r['short']['cut_above_half']:.3f} ({r['short']['full_above_half']:.3f}) / "
                           f"{r['short']['escalation_mean_abs_change']:.3f} "
                           f"({r['short']['escalation_at_cut_mean_abs_change']:.3f})"))
    rows.append(("guarantee pairs: requests flagged / neutral turns left",
                 lambda r: f"{r['requests']['requests_flagged']} / {r['requests']['neutral_left']} "
                           f"(of {r['requests']['pairs']})"))
    lines = ["| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    lines += [f"| {label} | " + " | ".join(cell(results[m]) for m in models) + " |" for label, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a model directory (repeatable)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_sources(args.data_dir, ["uss", "stc3", "dbdc3"])
    results = {m: measure(Auditor.from_pretrained(m, device="cpu", precision="fp32"), loaded)
               for m in args.model}
    print(to_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

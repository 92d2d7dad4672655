"""Does a model's resolution head lose what its turn states carry to other sources? (issue 11)

Two measurements on the resolution pairs of the cross-source protocol (`quality.PAIRS`):

- `ends`: the model as shipped on each pair's transcripts, whole and cut to their last K turns
  (AUROC and mean P(resolved)): how far the score depends on conversation length, since STC-3,
  resolution's only training source, has short conversations and USS long ones; and each
  transcript without its closing (every trailing customer turn that is a closing pleasantry,
  `qualaudit.closing`, cut with the turns after it), then also without its last customer
  turn: whether the score rests on the closing, or on how the conversation ends
  (benchmarks/README.md, Round 6);
- `heads`: the model's turn states are read once (frozen encoder and turn heads), then its
  conversation heads are trained on STC-3 train's resolution labels alone, either continuing
  from the model's own heads or from new ones, for a few seeds, and scored on each pair after
  the first and the last epoch. The heads see exactly the states the model computes; only
  their weights differ.

Usage:
    python benchmarks/head_transfer.py [--model models/default] [--data-dir ../shared/data]
        [--last-turns 12,8,6,4] [--seeds 2] [--epochs 8] [--ends-only] [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qualaudit import Auditor
from qualaudit.batching import builder_for
from qualaudit.closing import without_closing
from qualaudit.heads import p_positive
from qualaudit.model import QualityModel
from qualaudit.schema import Transcript
from qualaudit.training.datasets import load_sources

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = "resolution.v1"


def resolution_pairs(loaded) -> dict[str, list[tuple[Transcript, float]]]:
    """Resolution's protocol pairs on their whole conversations (this benchmark cuts them
    itself; the protocol's own cut, `Pair.cut`, is left out)."""
    return {p.name: [(e.transcript, y) for e, y in dataclasses.replace(p, cut=None).items(loaded.get(p.source, []))]
            for p in quality.PAIRS if p.target == "resolution"}


def without_last_customer_turn(t: Transcript) -> Transcript:
    """The transcript cut before its last customer turn, unless that is its only one."""
    customer = [k for k, x in enumerate(t.turns) if x.role == "customer"]
    return dataclasses.replace(t, turns=t.turns[:customer[-1]]) if len(customer) >= 2 else t


def ends(model_dir: str, pairs: dict, last_turns: list[int]) -> dict:
    """AUROC and mean resolution per pair, the transcripts whole, cut to their last K turns,
    without their closing, and without their closing and last customer turn."""
    auditor = Auditor.from_pretrained(model_dir, precision="fp32")
    readings = {"whole": lambda t: t}
    readings |= {f"last {k}": (lambda t, k=k: dataclasses.replace(t, turns=t.turns[-k:])) for k in last_turns}
    readings["no closing"] = without_closing
    readings["no closing, no last customer turn"] = lambda t: without_last_customer_turn(without_closing(t))
    out = {}
    for name, items in pairs.items():
        labels = np.array([y for _, y in items])
        out[name] = {"median_turns": float(np.median([len(t.turns) for t, _ in items]))}
        for reading, change in readings.items():
            scores = np.array([r.resolution for r in auditor.score([change(t) for t, _ in items])])
            out[name][reading] = {"auroc": quality.auroc(scores, labels), "mean": float(scores.mean())}
    return out


def turn_states(model: QualityModel, transcripts: list[Transcript]) -> tuple[torch.Tensor, ...]:
    """Padded (B, T, H) states, (B, T, F) turn-head features, is_agent and mask: what the
    conversation heads read, computed once."""
    builder = builder_for(model.config, model.tokenizer)
    rows = []
    with torch.inference_mode():
        for k in range(0, len(transcripts), 32):
            windows = builder.build(transcripts[k:k + 32])
            states = model.encode_windows(windows)
            is_agent = torch.tensor(windows.is_agent, dtype=torch.bool)
            features = model.turn_heads.features(model.turn_heads(states), is_agent)
            for chunk in zip(states.split(windows.turn_counts), features.split(windows.turn_counts),
                             is_agent.split(windows.turn_counts)):
                rows.append(chunk)
    T = max(len(s) for s, _, _ in rows)
    states = torch.zeros(len(rows), T, rows[0][0].shape[1])
    features = torch.zeros(len(rows), T, rows[0][1].shape[1])
    is_agent = torch.zeros(len(rows), T, dtype=torch.bool)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (s, f, a) in enumerate(rows):
        states[i, :len(s)], features[i, :len(s)], is_agent[i, :len(s)], mask[i, :len(s)] = s, f, a, True
    return states, features, is_agent, mask


def p_resolved(heads, states, features, is_agent, mask) -> torch.Tensor:
    # resolution alone is read: a head that reads the echo (escalation) gets band 0 everywhere
    logits = heads(states, features, is_agent & mask, mask, echo=torch.zeros_like(mask, dtype=torch.long)).logits[RESOLUTION]
    return p_positive(torch.softmax(logits.float(), -1))


def heads(model_dir: str, loaded, pairs: dict, seeds: int, epochs: int) -> dict:
    """The model's own resolution head, and heads trained on its frozen states from the model's
    weights ("continued") or from new ones ("new"), on STC-3 train, batch 16, AdamW lr 1e-3
    (the training recipe's head_lr), soft binary cross-entropy on P(A > 0)."""
    model = QualityModel.from_pretrained(model_dir).eval()
    if model.config.closing_apart:  # its resolution reads other states than turn_states gives
        raise ValueError(f"{model_dir}: reads {model.config.closing_apart} apart from the "
                         "closing; the heads measurement reads every turn's first reading")
    train = [e for e in loaded["stc3"] if e.split == "train" and "resolution" in e.labels]
    x_train = turn_states(model, [e.transcript for e in train])
    y_train = torch.tensor(np.array([p_positive(e.labels["resolution"]) for e in train]),
                           dtype=torch.float32)
    tests = {name: (turn_states(model, [t for t, _ in items]), np.array([y for _, y in items]))
             for name, items in pairs.items()}

    def measure(h) -> dict[str, float]:
        h.eval()
        with torch.no_grad():
            return {name: quality.auroc(p_resolved(h, *x).numpy(), y) for name, (x, y) in tests.items()}

    out = {"shipped": measure(model.conversation_heads), "continued": [], "new": []}
    for start in ("continued", "new"):
        for seed in range(seeds):
            torch.manual_seed(seed)
            h = copy.deepcopy(model.conversation_heads) if start == "continued" else model.new_conversation_heads()
            optimizer = torch.optim.AdamW(h.parameters(), lr=1e-3, weight_decay=0.01)
            order = torch.Generator().manual_seed(seed)
            run = {"seed": seed}
            for epoch in range(1, epochs + 1):
                h.train()
                for index in torch.randperm(len(y_train), generator=order).split(16):
                    p = p_resolved(h, *(x[index] for x in x_train)).clamp(1e-6, 1 - 1e-6)
                    loss = F.binary_cross_entropy(p, y_train[index])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                if epoch in (1, epochs):
                    run[f"epoch {epoch}"] = measure(h)
            out[start].append(run)
    return out


def markdown(result: dict) -> str:
    lines = []
    names = list(result["ends"])
    cuts = [k for k in result["ends"][names[0]] if k != "median_turns"]
    lines += ["| pair | median turns | " + " | ".join(cuts) + " |", "|---|---:|" + "---|" * len(cuts)]
    for name, row in result["ends"].items():
        lines.append(f"| {name} | {row['median_turns']:.0f} | " + " | ".join(
            f"{row[c]['auroc']:.3f} (mean {row[c]['mean']:.3f})" for c in cuts) + " |")
    if result["heads"] is None:
        return "\n".join(lines)
    lines += ["", "| heads | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| shipped | " + " | ".join(f"{result['heads']['shipped'][n]:.3f}" for n in names) + " |")
    for start in ("continued", "new"):
        for run in result["heads"][start]:
            for key in (k for k in run if k.startswith("epoch")):
                lines.append(f"| {start}, seed {run['seed']}, {key} | " + " | ".join(
                    f"{run[key][n]:.3f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--last-turns", default="12,8,6,4")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--ends-only", action="store_true", help="skip the heads trained on frozen states")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_sources(args.data_dir)
    pairs = resolution_pairs(loaded)
    result = {"model": args.model, "command": "python benchmarks/head_transfer.py " + " ".join(sys.argv[1:]),
              "ends": ends(args.model, pairs, [int(k) for k in args.last_turns.split(",")]),
              "heads": None if args.ends_only else heads(args.model, loaded, pairs, args.seeds, args.epochs)}
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

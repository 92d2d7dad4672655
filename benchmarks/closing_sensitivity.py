"""Where a model's closing-thanks sensitivity comes from (issue 11): the encoder, or the heads.

For each `closing_thanks` pair (`a` = `b` plus the customer's closing pleasantries and the
agent's farewell), P(resolved) before calibration is computed three ways:
- `b`: the shorter conversation as the model reads it;
- `a`: the longer one;
- `a cut`: `a`'s turn states (read with the closing in the text) for `b`'s turns only, through
  the same turn and conversation heads.
`a cut − b` is what the encoder's reading moves (earlier turns' states seeing the closing
after them; exactly 0 for `reading = conversation_causal`), `a − a cut` what the heads move
(the closing turns pooled, end positions shifted). Calibration is left out: it is monotone,
and these parts are to be compared with each other.

Usage:
    python benchmarks/closing_sensitivity.py [--model models/default] [--pairs tests/behaviour_pairs.jsonl]
        [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualaudit.batching import TurnWindows, builder_for
from qualaudit.heads import p_positive
from qualaudit.io import read_transcripts
from qualaudit.model import QualityModel, default_model_path
from qualaudit.schema import Transcript

sys.path.insert(0, str(Path(__file__).resolve().parent))
import behaviour  # noqa: E402  (benchmarks/ is not a package)


def p_resolved(model: QualityModel, windows: TurnWindows, states: torch.Tensor) -> float:
    """Uncalibrated P(resolved) of one conversation's windows, the model's forward pass reading
    the given (T, H) turn states instead of encoding the windows."""
    logits = model(windows, encode=lambda _: states).conversation_logits
    name = next(s.name for s in model.specs if s.target == "resolution")
    return float(p_positive(torch.softmax(logits[name], -1).numpy())[0])


@torch.no_grad()
def decompose(model: QualityModel, a: Transcript, b: Transcript) -> dict[str, float]:
    builder = builder_for(model.config, model.tokenizer)
    windows_a, windows_b = builder.build([a]), builder.build([b])
    states_a = model.encode_windows(windows_a)
    p_a = p_resolved(model, windows_a, states_a)
    p_b = p_resolved(model, windows_b, model.encode_windows(windows_b))
    p_cut = p_resolved(model, windows_b, states_a[:windows_b.n_turns])
    return {"a": p_a, "b": p_b, "a_cut": p_cut, "total": p_a - p_b, "encoder": p_cut - p_b,
            "heads": p_a - p_cut}


def run(model: QualityModel, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    if model.config.closing_apart:  # resolution does not read the closing by construction
        raise ValueError(f"the model reads {model.config.closing_apart} apart from the closing: "
                         "there is no closing effect on it to split")
    chosen = [p for p in pairs if p["behaviour"] == "closing_thanks"]
    if not chosen:
        raise ValueError("no closing_thanks pairs to measure")
    rows = {}
    for p in chosen:
        a, b = read_transcripts([p["a"], p["b"]])
        rows[p["id"]] = decompose(model, a, b)
    parts = ("total", "encoder", "heads")
    return {"pairs": rows,
            "mean": {k: float(np.mean([r[k] for r in rows.values()])) for k in parts},
            "mean_abs": {k: float(np.mean([abs(r[k]) for r in rows.values()])) for k in parts}}


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["| | total (a − b) | encoder (a cut − b) | heads (a − a cut) |", "|---|---|---|---|"]
    for what in ("mean", "mean_abs"):
        r = report[what]
        lines.append(f"| {what.replace('_', ' ')} | {r['total']:+.3f} | {r['encoder']:+.3f} | "
                     f"{r['heads']:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    parser.add_argument("--pairs", default=str(behaviour.DEFAULT_PAIRS), help="pairs JSONL file")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = QualityModel.from_pretrained(args.model or default_model_path()).eval()
    report = run(model, behaviour.load_pairs(args.pairs))
    print(to_markdown(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

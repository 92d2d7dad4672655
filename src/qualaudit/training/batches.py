"""Labelled examples ready for the model: cut and windowed as scoring would (`prepare`), grouped
into batches, and their labels stacked per head. Shared by the train loop and the
calibration job."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..batching import TurnWindows, WindowBuilder, builder_for, within_max_turns
from ..heads import HeadSpec
from ..model import ModelOutput, QualityModel
from .datasets import Example


@dataclass
class Prepared:
    """An example with its encoder windows, ready for batching."""

    example: Example
    windows: TurnWindows

    @property
    def tokens(self) -> int:
        return sum(self.windows.lengths)

    @property
    def turns(self) -> int:
        return self.windows.n_turns


def prepare(examples: list[Example], builder: WindowBuilder, max_turns: int | None) -> list[Prepared]:
    """Each example cut to `max_turns` scored turns as scoring cuts them (first and last
    halves; its turn labels alike), with its turn windows."""
    out = []
    for e in examples:
        transcript, left_out, kept = within_max_turns(e.transcript, max_turns)
        if left_out is not None:
            e = Example(transcript, e.source, e.group,
                        {k: v[kept] for k, v in e.turn_labels.items()}, e.labels, e.info, e.weight)
        out.append(Prepared(e, builder.build([e.transcript])))
    return out


def window_builder(model: QualityModel) -> WindowBuilder:
    """The model's own reading (its config), as scoring builds it."""
    return builder_for(model.config, model.tokenizer)


def batches(items: list[Prepared], batch_tokens: int, rng: random.Random) -> list[list[Prepared]]:
    """Conversations in random order, grouped until a batch holds `batch_tokens` tokens;
    neighbours are sorted by size within pools of 64 to keep padding small."""
    order = items[:]
    rng.shuffle(order)
    pooled = []
    for k in range(0, len(order), 64):
        pooled += sorted(order[k:k + 64], key=lambda p: p.tokens)
    out, current, size = [], [], 0
    for p in pooled:
        current.append(p)
        size += p.tokens
        if size >= batch_tokens:
            out.append(current)
            current, size = [], 0
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def forward(model: QualityModel, batch: list[Prepared], budget: int = 4096) -> ModelOutput:
    """The model's forward pass over a batch of prepared conversations (raw logits)."""
    return model(TurnWindows.concat([p.windows for p in batch]), max_batch_tokens=budget)


def stack_labels(batch: list[Prepared], specs: list[HeadSpec]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{head name: (targets, weights)} with NaN targets (no label) replaced by 0 at weight 0."""
    out = {}
    for s in specs:
        if s.level == "conversation":
            rows = [p.example.labels.get(s.target) for p in batch]
            weights = [p.example.weight if r is not None else 0.0 for p, r in zip(batch, rows)]
            rows = [np.full(s.shape, np.nan, np.float32) if r is None else np.asarray(r, np.float32)
                    for r in rows]
            values = np.stack(rows)
            w = np.asarray(weights, np.float32).reshape(-1, *([1] * len(s.shape)))
            w = np.broadcast_to(w, values.shape).copy()
        else:
            values = turn_values(batch, s.target, s.shape)
            w = np.ones_like(values)
        w[np.isnan(values)] = 0.0
        out[s.name] = (torch.from_numpy(np.nan_to_num(values)), torch.from_numpy(w))
    return out


def turn_values(batch: list[Prepared], target: str, shape: tuple[int, ...] = ()) -> np.ndarray:
    """(turns of the batch, *shape) labels of `target` at each turn, NaN where none."""
    return np.concatenate([np.full((p.turns, *shape), np.nan, np.float32) if x is None else x
                           for p in batch for x in [p.example.turn_labels.get(target)]])

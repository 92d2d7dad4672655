"""Head specs with versioned names: what each head predicts, at which level, in what shape.

A saved model lists the spec names it was built with; a later library version keeps the old
specs in this registry, so old models keep loading while new heads get new names (".v2").
The torch modules that compute them are in `head_layers`; this module needs no torch, so
the output schema and the readers can use the registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ModelLoadError

Level = Literal["agent_turn", "customer_turn", "conversation"]
EMPATHY_MECHANISMS = ("emotional_reactions", "interpretations", "explorations")
ESCALATION_SIGNALS = ("dissatisfied", "complaint", "asks_for_human")


@dataclass(frozen=True)
class HeadSpec:
    """What a head predicts.

    `shape` is the logits shape per item. A "binary" head has independent sigmoid outputs
    (shape () for one, (K,) for K named `labels`); a "categorical" head has softmax
    distributions over the last axis (the 5-level scale (5,), or empathy's 3 mechanisms x 3
    levels (3, 3), mechanisms named by `labels`). `pooling` (conversation heads): "full" sees
    the whole conversation with end-relative positions; "causal" is a running estimate that
    only sees turns up to each point.
    """

    name: str
    target: str
    level: Level
    kind: Literal["binary", "categorical"]
    shape: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    pooling: Literal["full", "causal"] | None = None

    @property
    def binary(self) -> bool:
        return self.kind == "binary"

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def key(self) -> str:
        """The head's name as a module key (torch's ModuleDict keys cannot contain dots)."""
        return self.name.replace(".", "_")

    def owns(self, parameter: str) -> bool:
        """Whether a model parameter (a `state_dict` name) belongs to this head's own layers."""
        return f".{self.key}." in parameter


HEAD_SPECS: dict[str, HeadSpec] = {
    s.name: s
    for s in (
        HeadSpec("empathy.v1", "empathy", "agent_turn", "categorical", (3, 3), EMPATHY_MECHANISMS),
        HeadSpec("solution_given.v1", "solution_given", "agent_turn", "binary"),
        HeadSpec("breakdown.v1", "breakdown", "agent_turn", "binary"),
        HeadSpec("escalation_signal.v1", "escalation_signal", "customer_turn", "binary", (3,),
                 ESCALATION_SIGNALS),
        HeadSpec("solution_confirmed.v1", "solution_confirmed", "customer_turn", "binary"),
        HeadSpec("resolution.v1", "resolution", "conversation", "categorical", (5,), pooling="full"),
        HeadSpec("satisfaction.v1", "satisfaction", "conversation", "categorical", (5,), pooling="full"),
        HeadSpec("repeat_inquiry.v1", "repeat_inquiry", "conversation", "binary", pooling="full"),
        HeadSpec("escalation.v1", "escalation", "conversation", "binary", pooling="causal"),
    )
}
DEFAULT_HEADS: tuple[str, ...] = tuple(HEAD_SPECS)


# index of the first level above 0 on the 5-level scale -2..2
POSITIVE_FROM = 3


def p_positive(dist: np.ndarray) -> np.ndarray:
    """P(level > 0) from distributions over the 5-level scale -2..2 (last axis): what
    `resolution` and `satisfaction` report, so there is one source of truth, never a second head."""
    return dist[..., POSITIVE_FROM:].sum(-1)


def empathy_score(levels: np.ndarray) -> np.ndarray:
    """(..., 3 mechanisms, 3 levels) probabilities -> the expected levels summed over the
    mechanisms, divided by their maximum 6: a graded score in [0, 1]. Written with indexing
    only, so that a torch tensor gives a tensor (training's style loss reads the row's score)."""
    return (levels[..., 1] + 2.0 * levels[..., 2]).sum(-1) / 6.0


def resolve_heads(names: list[str] | tuple[str, ...]) -> list[HeadSpec]:
    unknown = [n for n in names if n not in HEAD_SPECS]
    if unknown:
        raise ModelLoadError(
            f"unknown head spec(s) {unknown}; this qualaudit version knows {sorted(HEAD_SPECS)}. "
            "The model was probably saved by a newer qualaudit: upgrade it (pip install -U qualaudit)"
        )
    targets = [HEAD_SPECS[n].target for n in names]
    duplicated = {t for t in targets if targets.count(t) > 1}
    if duplicated:
        raise ModelLoadError(f"several heads predict the same target(s) {sorted(duplicated)}")
    return [HEAD_SPECS[n] for n in names]


def turn_feature_size(specs: list[HeadSpec]) -> int:
    return sum(s.size for s in specs if s.level != "conversation")

"""The example type every dataset reader yields, the fixed split of its group, and the small
builders the readers share."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ...heads import ESCALATION_SIGNALS
from ...normalize import make_transcript
from ...schema import Transcript

Split = Literal["train", "dev", "report"]
SPLITS: tuple[str, ...] = ("train", "dev", "report")
DevHalf = Literal["stop", "calibrate"]
# Shares of each source's groups: train 80%, dev 10% (halved: early stopping | calibration),
# report 10%.
SPLIT_BOUNDS = (0.8, 0.9)


@dataclass
class Example:
    """A transcript with the labels one source gives it.

    `turn_labels[target]` is (number of scored turns, *head shape), NaN where the source says
    nothing about a turn; `labels[target]` is the conversation label (a probability, or a
    distribution over the 5-level scale). `info` holds evaluation-only facts (mean annotator
    scores, raw ratings); `weight` scales the losses of its conversation labels (a source far
from customer support weighs less).
    """

    transcript: Transcript
    source: str
    group: str
    turn_labels: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    @property
    def split(self) -> Split:
        return split_of(self.source, self.group)

    @property
    def key(self) -> str:
        """"source/transcript id": how benchmark results and teacher labels name an example."""
        return f"{self.source}/{self.transcript.id}"

    @property
    def augmented(self) -> bool:
        """Made by `augment.Augmenter` (its source is "augment:<kind>"), not read from a dataset."""
        return self.source.startswith("augment:")


def split_of(source: str, group: str) -> Split:
    """The fixed split of a group: the same on every machine and in every run."""
    u = _uniform(f"{source}\x00{group}")
    return "train" if u < SPLIT_BOUNDS[0] else "dev" if u < SPLIT_BOUNDS[1] else "report"


def dev_half(source: str, group: str) -> DevHalf:
    """Which half of the dev split a group is in: "stop" chooses the weights (early stopping),
    "calibrate" fits the calibration, so the calibration is never fitted on the items that
    chose the weights (it would look better there than anywhere else)."""
    return "stop" if _uniform(f"{source}\x00{group}\x00dev-half") < 0.5 else "calibrate"


def _uniform(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def transcript(tid: str, turns: list[tuple[str, str]], agent_type: str = "unknown",
               source: str | None = None) -> Transcript:
    """A Transcript from (role, text) pairs through the library's own validation."""
    return make_transcript(tid, [{"role": r, "text": t} for r, t in turns],
                           agent_type=agent_type, source=source)


# a customer turn that names a person to talk to: never labelled "does not ask for a human"
_PERSON = (r"human|real person|live (agent|person)|representative|operator|supervisor|manager|"
           r"(speak|talk) (to|with) (someone|somebody|a person|an? agent)")
ASKS_FOR_A_PERSON = re.compile(rf"\b({_PERSON}|customer service)\b", re.I)
# the same without "customer service", for posts addressed to "@Company Customer Service"
NAMES_A_PERSON = re.compile(rf"\b({_PERSON})\b", re.I)


def no_request_for_a_person(t: Transcript, signals: np.ndarray,
                            person: re.Pattern = ASKS_FOR_A_PERSON) -> np.ndarray:
    """`signals` (escalation_signal labels, one row per scored turn) with asks_for_human = 0
    on every customer turn that `person` does not match: for sources whose users do not ask
    for a person (task and chat systems, complaint posts), so that the signal learns what
    ordinary turns look like, not only Bitext's requests."""
    column = ESCALATION_SIGNALS.index("asks_for_human")
    for k, turn in enumerate(t.scored_turns):
        if turn.role == "customer" and not person.search(turn.text):
            signals[k, column] = 0.0
    return signals


def empty_turn_labels(t: Transcript, shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.full((len(t.scored_turns), *shape), np.nan, dtype=np.float32)


def distribution(values: list[int], low: int = -2, high: int = 2) -> np.ndarray:
    """Annotators' ratings -> the share of each level low..high (a soft target)."""
    counts = np.bincount(np.asarray(values) - low, minlength=high - low + 1)
    return (counts / counts.sum()).astype(np.float32)

"""Public datasets as training examples: one module per dataset turns its original file
format into Transcripts plus labels for the heads it supervises (the label card is in
`models/default/README.md`). Readers take a local path; `load_sources` finds every dataset
under a data directory laid out like ../shared/data.

Splits are fixed by a hash of (source, group): the group is the dialogue or pair id (for
Bitext, the paraphrase group of an utterance), so paraphrases and the turns of a dialogue
never straddle two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..normalize import make_transcript
from ..schema import Transcript

Split = Literal["train", "dev", "report"]
SPLITS: tuple[str, ...] = ("train", "dev", "report")
# Shares of each source's groups: train 80%, dev 10% (early stopping, calibration), report 10%.
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


def split_of(source: str, group: str) -> Split:
    """The fixed split of a group: the same on every machine and in every run."""
    digest = hashlib.sha256(f"{source}\x00{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if u < SPLIT_BOUNDS[0] else "dev" if u < SPLIT_BOUNDS[1] else "report"


def transcript(tid: str, turns: list[tuple[str, str]], agent_type: str = "unknown",
               source: str | None = None) -> Transcript:
    """A Transcript from (role, text) pairs through the library's own validation."""
    return make_transcript(tid, [{"role": r, "text": t} for r, t in turns],
                           agent_type=agent_type, source=source)


def empty_turn_labels(t: Transcript, shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.full((len(t.scored_turns), *shape), np.nan, dtype=np.float32)


def distribution(values: list[int], low: int = -2, high: int = 2) -> np.ndarray:
    """Annotators' ratings -> the share of each level low..high (a soft target)."""
    counts = np.bincount(np.asarray(values) - low, minlength=high - low + 1)
    return (counts / counts.sum()).astype(np.float32)


def _readers() -> dict[str, tuple[str, Callable[[Path], list[Example]]]]:
    from . import bitext, dbdc3, epitome, stc3, uss

    return {m.NAME: (m.FOLDER, m.read) for m in (stc3, uss, epitome, bitext, dbdc3)}


def load_sources(data_dir: str | Path, sources: list[str] | None = None) -> dict[str, list[Example]]:
    """Every known dataset found under `data_dir` (folders named as in ../shared/data), or
    only `sources`; a named source that is missing is an error."""
    data_dir = Path(data_dir)
    readers = _readers()
    unknown = sorted(set(sources or []) - set(readers))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; known: {sorted(readers)}")
    found = {}
    for name, (folder, read) in readers.items():
        if sources is not None and name not in sources:
            continue
        path = data_dir / folder
        if not path.is_dir():
            if sources is not None:
                raise FileNotFoundError(f"{path}: no {name} data here")
            continue
        found[name] = read(path)
    return found


def load_examples(data_dir: str | Path, sources: list[str] | None = None) -> list[Example]:
    """`load_sources`, every source's examples in one list."""
    return [e for examples in load_sources(data_dir, sources).values() for e in examples]


def by_split(examples: list[Example], split: str) -> list[Example]:
    if split == "all":
        return list(examples)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or 'all', found {split!r}")
    return [e for e in examples if e.split == split]

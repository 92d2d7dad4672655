"""Public datasets as training examples: one module per dataset turns its original file
format into Transcripts plus labels for the heads it supervises (the label card is in
`models/default/README.md`). Readers take a local path; `load_sources` finds every dataset
under a data directory laid out like ../shared/data.

Splits are fixed by a hash of (source, group): the group is the dialogue or pair id (for
Bitext, the paraphrase group of an utterance), so paraphrases and the turns of a dialogue
never straddle two splits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import bitext, dbdc3, epitome, stc3, uss
from .examples import (
    SPLITS,
    Example,
    Split,
    dev_half,
    distribution,
    empty_turn_labels,
    split_of,
    transcript,
)

__all__ = ["SPLITS", "Example", "Split", "by_split", "dev_half", "distribution", "empty_turn_labels",
           "load_examples", "load_sources", "split_of", "transcript"]


def _readers() -> dict[str, tuple[str, Callable[[Path], list[Example]]]]:
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
    """The examples of one split; "dev:stop" and "dev:calibrate" are the halves of dev that
    choose the weights and fit the calibration (`dev_half`)."""
    if split == "all":
        return list(examples)
    split, _, half = split.partition(":")
    if split not in SPLITS or (half and (split != "dev" or half not in ("stop", "calibrate"))):
        raise ValueError(f"split must be one of {SPLITS}, dev:stop, dev:calibrate or 'all', "
                         f"found {split + (':' + half if half else '')!r}")
    return [e for e in examples if e.split == split
            and (not half or dev_half(e.source, e.group) == half)]

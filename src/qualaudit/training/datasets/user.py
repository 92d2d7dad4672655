"""A user's own labels as training and evaluation examples.

Public data only approximates what a support team means by "resolved" or "empathetic";
a few hundred of their own QA labels fine-tune the heads (`train.TrainingArgs(examples=...)`)
and measure agreement (`qualaudit.report.agreement`). Both read the same labels file.

The labels file is described in `qualaudit.io.labels`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...heads import EMPATHY_MECHANISMS
from ...io import read_transcripts
from ...io.labels import read_labels
from ...schema import Transcript
from .examples import Example, empty_turn_labels

log = logging.getLogger("qualaudit.datasets")

NAME = "user"
_SHOWN_IDS = 5


def user_examples(transcripts: Any, labels: Mapping[str, Mapping[str, Any]] | str | Path,
                  ) -> list[Example]:
    """Training/evaluation examples: the transcripts that have labels, joined by id.

    Transcripts without labels are skipped (their count is logged at INFO on
    "qualaudit.datasets"); labels whose id has no transcript are an error, since they are
    usually an id typo or the wrong export. Examples have `source="user"` and `group=id`,
    so `Example.split` gives a fixed train/dev/report split.

    Args:
        transcripts: Transcripts or anything `qualaudit.io.read_transcripts` reads.
        labels: `read_labels`' result, or the labels file's path.

    Raises:
        InputError: labels for unknown ids (a few listed), or an empathy `turn` that is not
            an agent turn of its transcript (naming the labels file and line).

    Example:
        >>> examples = user_examples("chats.jsonl", "qa_labels.csv")  # doctest: +SKIP
        >>> train(TrainingArgs(output_dir="models/ours", init="models/default",
        ...                    examples=examples, freeze_encoder=True))
    """
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    if isinstance(transcripts, Transcript):
        transcripts = [transcripts]
    examples, unlabelled, seen = [], 0, set()
    for t in read_transcripts(transcripts):
        seen.add(t.id)
        if t.id not in labels:
            unlabelled += 1
            continue
        examples.append(_example(t, labels[t.id]))
    orphans = [tid for tid in labels if tid not in seen]
    if orphans:
        first = next(iter(labels.values()), {})
        raise InputError(
            f"{len(orphans)} labelled id(s) have no transcript, e.g. {orphans[:_SHOWN_IDS]}",
            source=first.get("source"), field="id",
            hint="Check that the labels and the transcripts come from the same export")
    if unlabelled:
        log.info("%d transcript(s) without labels skipped; %d labelled", unlabelled, len(examples))
    return examples


def _example(t: Transcript, entry: Mapping[str, Any]) -> Example:
    labels: dict[str, np.ndarray] = {}
    grade = entry.get("resolution_grade")
    if grade is None and entry.get("resolution") is not None:
        grade = 1 if entry["resolution"] else -1
    if grade is not None:
        labels["resolution"] = np.eye(5, dtype=np.float32)[grade + 2]
    if entry.get("satisfaction") is not None:
        labels["satisfaction"] = np.eye(5, dtype=np.float32)[entry["satisfaction"] + 2]
    for target in ("repeat_inquiry", "escalation"):
        if entry.get(target) is not None:
            labels[target] = np.float32(entry[target])
    turn_labels = {}
    empathy = _empathy(t, entry)
    if empathy is not None:
        turn_labels["empathy"] = empathy
    info = {k: v for k, v in entry.items() if k not in ("source", "line")}
    return Example(t, NAME, t.id, turn_labels=turn_labels, labels=labels, info=info)


def _empathy(t: Transcript, entry: Mapping[str, Any]) -> np.ndarray | None:
    """(scored turns, 3 mechanisms, 3 levels) one-hot rows, NaN where unlabelled."""
    turns: Mapping[int, int] = entry.get("empathy_turns") or {}
    whole = entry.get("empathy")
    if not turns and whole is None:
        return None
    levels = empty_turn_labels(t, (len(EMPATHY_MECHANISMS), 3))
    position = {turn.index: k for k, turn in enumerate(t.scored_turns) if turn.role == "agent"}
    if not turns:
        if not position:
            log.warning("%s: transcript %r has no agent turn; its empathy label is unused",
                        entry.get("source"), t.id)
            return None
        turns = dict.fromkeys(position, whole)
    for index, grade in turns.items():
        if index not in position:
            raise InputError(
                f"turn {index} is not an agent turn of this transcript; its agent turns are "
                f"{sorted(position)[:20]}", source=entry.get("source"), transcript_id=t.id,
                field="turn", hint="`turn` is the 0-based index of the turn in the input")
        levels[position[index]] = np.eye(3)[grade]
    return levels

"""User Satisfaction Simulation (USS): MultiWOZ, SGD and ReDial dialogues with 1-5 ratings
from 3-5 annotators on every user turn (judging the system turn before it) and an OVERALL
line per dialogue.

Labels: on each user turn, escalation_signal "dissatisfied" = the share of annotators rating
below 3 (its evaluation target is mean rating < 3); "asks_for_human" = 0 (see below);
satisfaction = the OVERALL ratings as a distribution over -2..2 (rating - 3); repeat_inquiry =
the share rating the last rated user turn below 3 (dissatisfied at the end).
`info["ratings"]` keeps every turn's ratings.

The users pursue a booking or a recommendation with a system and do not ask for a person:
`examples.ASKS_FOR_A_PERSON` finds 7 of the 35,188 user turns (a few of them asking for a manager), and
those stay unlabelled. Without these negatives the signal learned only from Bitext, whose every
utterance is a request, and fired (above 0.5) on 28% of the user turns of the USS dev split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...heads import ESCALATION_SIGNALS
from .examples import Example, distribution, empty_turn_labels, no_request_for_a_person, transcript

NAME = "uss"
FOLDER = "uss"
FILES = ("MWOZ.txt", "SGD.txt", "ReDial.txt")
DISSATISFIED = ESCALATION_SIGNALS.index("dissatisfied")


def read(path: Path) -> list[Example]:
    examples = []
    for name in FILES:
        file = path / name
        if not file.is_file():
            continue
        blocks = file.read_text(encoding="utf-8").strip().split("\n\n")
        for number, block in enumerate(blocks):
            example = _example(block, f"{file.stem}-{number}", str(file))
            if example is not None:
                examples.append(example)
    return examples


def _ratings(field: str) -> list[int]:
    return [int(x) for x in field.split(",") if x.strip()]


def _example(block: str, tid: str, source: str) -> Example | None:
    turns, ratings, overall = [], [], None
    for line in block.splitlines():
        parts = line.split("\t") + ["", "", ""]
        role, text, rating = parts[0].strip(), parts[1].strip(), parts[3].strip()
        if role == "USER" and text == "OVERALL":
            overall = _ratings(rating)
            continue
        if not text:
            continue
        turns.append((role, text))
        ratings.append(_ratings(rating) if role == "USER" else [])
    if not turns or not any(ratings):
        return None
    t = transcript(tid, turns, source=source)
    signals = empty_turn_labels(t, (len(ESCALATION_SIGNALS),))
    for k, turn in enumerate(t.scored_turns):
        if ratings[turn.index]:
            signals[k, DISSATISFIED] = np.mean(np.asarray(ratings[turn.index]) < 3)
    no_request_for_a_person(t, signals)
    last = [r for r in ratings if r][-1]
    labels = {"repeat_inquiry": np.float32(np.mean(np.asarray(last) < 3))}
    if overall:
        labels["satisfaction"] = distribution([r - 3 for r in overall])
    return Example(t, NAME, tid, turn_labels={"escalation_signal": signals}, labels=labels,
                   info={"ratings": ratings, "overall": overall, "corpus": Path(source).stem})

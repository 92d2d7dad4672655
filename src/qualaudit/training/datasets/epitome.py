"""EPITOME (Sharma et al. 2020): Reddit mental-health seeker posts and responses, each
response graded 0/1/2 for three empathy mechanisms (emotional reactions, interpretations,
explorations), in three CSV files sharing the same pairs. Research use only (academic
licence).

Labels: each pair is a two-turn transcript (seeker post = customer turn, response = agent
turn); the agent turn's empathy target is a one-hot level per mechanism (a mechanism missing
from its file is unlabelled).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...heads import EMPATHY_MECHANISMS
from .examples import Example, empty_turn_labels, transcript

NAME = "epitome"
FOLDER = "epitome"
FILES = {"emotional_reactions": "emotional-reactions-reddit.csv",
         "interpretations": "interpretations-reddit.csv",
         "explorations": "explorations-reddit.csv"}


def read(path: Path) -> list[Example]:
    pairs: dict[str, dict] = {}
    for mechanism, name in FILES.items():
        file = path / name
        if not file.is_file():
            continue
        with file.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                key = f"{row['sp_id']}/{row['rp_id']}"
                pair = pairs.setdefault(key, {"seeker": row["seeker_post"],
                                              "response": row["response_post"], "levels": {},
                                              "source": str(file)})
                pair["levels"][mechanism] = int(row["level"])
    return [e for key, pair in pairs.items() if (e := _example(key, pair)) is not None]


def _example(key: str, pair: dict) -> Example | None:
    if not pair["seeker"].strip() or not pair["response"].strip():
        return None
    t = transcript(key, [("customer", pair["seeker"]), ("agent", pair["response"])],
                   agent_type="human", source=pair["source"])
    levels = empty_turn_labels(t, (len(EMPATHY_MECHANISMS), 3))
    for m, mechanism in enumerate(EMPATHY_MECHANISMS):
        if mechanism in pair["levels"]:
            levels[1, m] = np.eye(3)[pair["levels"][mechanism]]
    return Example(t, NAME, key, turn_labels={"empathy": levels},
                   info={"levels": dict(pair["levels"])})

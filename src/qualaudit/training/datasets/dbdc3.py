"""DBDC3 (English dev part): open-domain chatbot dialogues, 30 annotators per system turn
saying O (fine), T (possible breakdown) or X (breakdown).

Labels: breakdown on each bot turn = the share of annotators saying X; escalation (weighted
down: these are chit-chat bots, not support) = the share of the bot's annotated turns that a
majority called a breakdown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .examples import Example, empty_turn_labels, transcript

NAME = "dbdc3"
FOLDER = "dbdc3"
WEIGHT = 0.3


def read(path: Path) -> list[Example]:
    files = sorted(path.rglob("*.log.json"))
    return [_example(json.loads(f.read_text(encoding="utf-8")), f) for f in files]


def _example(d: dict, file: Path) -> Example:
    turns = d["turns"]
    roles = ["agent" if t["speaker"] == "S" else "customer" for t in turns]
    t = transcript(d["dialogue-id"], [(r, x["utterance"]) for r, x in zip(roles, turns)],
                   agent_type="ai", source=str(file))
    shares = [np.mean([a["breakdown"] == "X" for a in x["annotations"]]) if x["annotations"]
              else np.nan for x in turns]
    breakdown = empty_turn_labels(t)
    for k, turn in enumerate(t.scored_turns):
        breakdown[k] = shares[turn.index]
    annotated = [s for s in shares if not np.isnan(s)]
    labels = {"escalation": np.float32(np.mean(np.asarray(annotated) > 0.5))} if annotated else {}
    return Example(t, NAME, t.id, turn_labels={"breakdown": breakdown}, labels=labels,
                   weight=WEIGHT, info={"bot": file.parent.name})

"""DBDC3 (English dev part): open-domain chatbot dialogues, 30 annotators per system turn
saying O (fine), T (possible breakdown) or X (breakdown).

Labels: breakdown on each bot turn = the share of annotators saying X; escalation (weighted
down: these are chit-chat bots, not support) = the share of the bot's annotated turns that a
majority called a breakdown; escalation_signal "asks_for_human" = 0 on every user turn
(`examples.no_request_for_a_person`: people chatting with an open-domain bot do not ask for a
person; the turns that name one, 14 of 4,174, all ask whether the bot is human and stay
unlabelled).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...heads import ESCALATION_SIGNALS
from .examples import Example, empty_turn_labels, no_request_for_a_person, transcript

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
    signals = no_request_for_a_person(t, empty_turn_labels(t, (len(ESCALATION_SIGNALS),)))
    return Example(t, NAME, t.id, turn_labels={"breakdown": breakdown, "escalation_signal": signals},
                   labels=labels, weight=WEIGHT, info={"bot": file.parent.name})

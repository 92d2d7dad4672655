"""NTCIR-14 STC-3 DCH-1 (English): customer-helpdesk dialogues, 19 annotators each.

Labels: resolution and satisfaction = the annotators' distributions of A (task
accomplishment) and S (satisfaction) over -2..2; per turn, the share of annotators marking a
helpdesk turn HNUG* (solution given) or a customer turn CNUG* (solution confirmed);
escalation = the share with A <= -1 and S <= -1 (not done and unhappy); repeat_inquiry = the
share for whom the customer never confirmed a solution and their last turn still states the
problem (CNUG0/CNUG): the conversation ends open from the customer's side.

escalation_signal "asks_for_human" = 0 on the customer turns that `NAMES_A_PERSON` does not
match (as for USS and DBDC3): the customers report faults, give names and numbers and thank
the helpdesk, and without these negatives a signal taught by requests written inside a
message about the problem fired on 5-12% of these turns, mostly long fault reports
(benchmarks/README.md, rounds 23-26). The posts are addressed to "@Company Customer
Service" (1,847 of the 3,114 training customer turns say "customer service"), so that
phrase does not keep a turn unlabelled here; the 57 turns that name a manager, an operator,
a human or a supervisor stay unlabelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...heads import ESCALATION_SIGNALS
from .examples import (
    NAMES_A_PERSON,
    Example,
    distribution,
    empty_turn_labels,
    no_request_for_a_person,
    transcript,
)

NAME = "stc3"
FOLDER = "stc3_dch"
FILE = "train_data_en.json"


def read(path: Path) -> list[Example]:
    file = path / FILE if path.is_dir() else path
    dialogues = json.loads(file.read_text(encoding="utf-8"))
    return [_example(d, str(file)) for d in dialogues]


def _example(d: dict, source: str) -> Example:
    roles = ["customer" if t["sender"] == "customer" else "agent" for t in d["turns"]]
    texts = [" ".join(u.strip() for u in t["utterances"]) for t in d["turns"]]
    t = transcript(str(d["id"]), list(zip(roles, texts)), agent_type="human", source=source)
    notes = d["annotations"]
    nuggets = np.array([a["nugget"] for a in notes])  # (annotators, turns)
    given, confirmed = empty_turn_labels(t), empty_turn_labels(t)
    for k, turn in enumerate(t.scored_turns):
        column = nuggets[:, turn.index]
        if turn.role == "agent":
            given[k] = np.mean(column == "HNUG*")
        else:
            confirmed[k] = np.mean(column == "CNUG*")
    last_customer = max(i for i, r in enumerate(roles) if r == "customer")
    A = [a["quality"]["A"] for a in notes]
    S = [a["quality"]["S"] for a in notes]
    open_end = [("CNUG*" not in row) and row[last_customer] in ("CNUG0", "CNUG") for row in nuggets]
    return Example(
        t, NAME, t.id,
        turn_labels={"solution_given": given, "solution_confirmed": confirmed,
                     "escalation_signal": no_request_for_a_person(
                         t, empty_turn_labels(t, (len(ESCALATION_SIGNALS),)), NAMES_A_PERSON)},
        labels={"resolution": distribution(A), "satisfaction": distribution(S),
                "escalation": np.float32(np.mean([a <= -1 and s <= -1 for a, s in zip(A, S)])),
                "repeat_inquiry": np.float32(np.mean(open_end))},
        info={"A_mean": float(np.mean(A)), "S_mean": float(np.mean(S))},
    )

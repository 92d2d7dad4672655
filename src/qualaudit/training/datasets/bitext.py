"""Bitext customer-support sample: single customer utterances with one of 27 intents.

Labels: each utterance is a one-turn transcript. escalation_signal "asks_for_human" = 1 for
contact_human_agent, 0 for the other intents except contact_customer_service (asking how
to reach customer service is close to asking for a human: unlabelled); "complaint" = 1 for
complaint, else 0; escalation = 1 for contact_human_agent and complaint (a human or higher
tier should take over), 0 for the rest, unlabelled for contact_customer_service.

Utterances are generated from templates with paraphrases and typos, so the split unit is a
paraphrase group: connected components of TF-IDF cosine >= 0.7 between utterances of the
same intent, entity values masked. `info` keeps the intent and the dataset's response.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ...heads import ESCALATION_SIGNALS
from .examples import Example, empty_turn_labels, transcript

NAME = "bitext"
FOLDER = "bitext"
PATTERN = "Bitext_Sample_Customer_Support_Training_Dataset*.csv"
HUMAN, COMPLAINT, UNLABELLED = "contact_human_agent", "complaint", "contact_customer_service"
SIMILAR = 0.7


def read(path: Path) -> list[Example]:
    files = sorted(path.glob(PATTERN)) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"{path}: no {PATTERN}")
    with files[0].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = paraphrase_groups(rows)
    return [_example(i, row, groups[i], str(files[0])) for i, row in enumerate(rows)]


def _example(i: int, row: dict, group: str, source: str) -> Example:
    t = transcript(f"bitext-{i}", [("customer", row["instruction"])], agent_type="ai",
                   source=source)
    intent = row["intent"]
    signals = empty_turn_labels(t, (len(ESCALATION_SIGNALS),))
    if intent != UNLABELLED:
        signals[0, ESCALATION_SIGNALS.index("asks_for_human")] = float(intent == HUMAN)
    signals[0, ESCALATION_SIGNALS.index("complaint")] = float(intent == COMPLAINT)
    labels = {} if intent == UNLABELLED else {
        "escalation": np.float32(intent in (HUMAN, COMPLAINT))}
    return Example(t, NAME, group, turn_labels={"escalation_signal": signals}, labels=labels,
                   info={"intent": intent, "response": row["response"]})


def paraphrase_groups(rows: list[dict]) -> list[str]:
    """A group id per row: rows of one intent linked by TF-IDF cosine >= SIMILAR."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    groups = [""] * len(rows)
    for intent in sorted({r["intent"] for r in rows}):
        members = [i for i, r in enumerate(rows) if r["intent"] == intent]
        vectors = TfidfVectorizer().fit_transform([_masked(rows[i]) for i in members])
        from scipy.sparse.csgraph import connected_components

        _, component = connected_components((vectors @ vectors.T) >= SIMILAR, directed=False)
        first = {}
        for k, i in enumerate(members):
            groups[i] = f"{intent}/{first.setdefault(component[k], i)}"
    return groups


def _masked(row: dict) -> str:
    text = row["instruction"].lower()
    if row.get("entity_value"):
        text = text.replace(row["entity_value"].lower(), " entity ")
    return re.sub(r"[^a-z ]", " ", text)

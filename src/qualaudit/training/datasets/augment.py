"""Training-time augmentations that teach behaviours no public dataset labels directly, built
from real turns of the training split (never from the dev or report splits):

- "human_request": a real customer request for a human (Bitext contact_human_agent) or a
  complaint is inserted as a customer turn into a real dialogue, which is cut one agent turn
  later: escalation = 1, and the turn's asks_for_human / complaint signal = 1.
- "loop": the customer restates the problem in other words (paraphrases of one Bitext
  intent, or a dialogue's own customer turns) and the agent answers with the same reply
  each time, 3-5 times: escalation = 1, repeat_inquiry = 1, resolution and satisfaction at
  the bottom of the scale.
- "dropped": a dialogue cut right after a customer turn that states the problem, before any
  solution: repeat_inquiry = 1 (the customer has to come back).

Conversation labels the change makes unknowable are left out; turn labels move with their
turns.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

import numpy as np

from ...heads import ESCALATION_SIGNALS
from .examples import Example, empty_turn_labels, transcript

KINDS = ("human_request", "loop", "dropped")
BOTTOM = np.array([0.7, 0.3, 0.0, 0.0, 0.0], dtype=np.float32)


class Augmenter:
    """Makes augmented examples from training examples; `make(n, rng)` draws n of them,
    a third of each kind."""

    def __init__(self, examples: list[Example]) -> None:
        self.dialogues = [e for e in examples if e.source in ("stc3", "uss")
                          and len(e.transcript.scored_turns) >= 2]
        by_intent: dict[str, list[Example]] = defaultdict(list)
        for e in examples:
            if e.source == "bitext":
                by_intent[e.info["intent"]].append(e)
        self.requests = by_intent.get("contact_human_agent", [])
        self.complaints = by_intent.get("complaint", [])
        self.intents = [v for k, v in by_intent.items() if len(v) >= 4
                        and k not in ("contact_human_agent", "complaint")]

    def make(self, n: int, rng: random.Random) -> list[Example]:
        makers = [self.human_request, self.loop, self.dropped]
        out = []
        for k in range(n):
            example = makers[k % 3](rng)
            if example is not None:
                out.append(example)
        return out

    def human_request(self, rng: random.Random) -> Example | None:
        if not self.dialogues or not (self.requests or self.complaints):
            return None
        base = rng.choice(self.dialogues)
        complaint = bool(self.complaints) and rng.random() < 0.3
        request = rng.choice(self.complaints if complaint else self.requests)
        turns = list(base.transcript.scored_turns)
        # after an agent turn (or at the start), then at most one more agent turn
        slots = [k + 1 for k, t in enumerate(turns) if t.role == "agent"] or [0]
        at = rng.choice(slots)
        keep = turns[:at]
        tail = [t for t in turns[at:at + 2] if t.role == "agent"][:1]
        pairs = [(t.role, t.text) for t in keep] + [("customer", request.transcript.turns[0].text)]
        pairs += [(t.role, t.text) for t in tail]
        t = transcript(f"{base.transcript.id}+request{rng.randrange(10**9)}", pairs)
        labels = _moved(base, t, list(range(at)) + [None] + [turns.index(x) for x in tail])
        signals = labels.setdefault("escalation_signal", empty_turn_labels(t, (3,)))
        signals[at] = np.nan
        signals[at, ESCALATION_SIGNALS.index("complaint")] = float(complaint)
        if not complaint:
            signals[at, ESCALATION_SIGNALS.index("asks_for_human")] = 1.0
        return Example(t, "augment:human_request", base.group, turn_labels=labels,
                       labels={"escalation": np.float32(1.0)})

    def loop(self, rng: random.Random) -> Example | None:
        times = rng.randint(3, 5)
        if not (self.intents or self.dialogues):
            return None
        if self.intents and (not self.dialogues or rng.random() < 0.5):
            members = rng.choice(self.intents)
            asks = [m.transcript.turns[0].text for m in rng.sample(members, min(times, len(members)))]
            reply = _first_sentences(members[0].info["response"], rng.randint(1, 2))
            pairs = [p for ask in asks for p in (("customer", ask), ("agent", reply))]
            prefix, base_id, group = [], "bitext", members[0].group
        else:
            base = rng.choice(self.dialogues)
            turns = base.transcript.scored_turns
            customers = [t.text for t in turns if t.role == "customer"]
            agents = [t.text for t in turns if t.role == "agent"]
            if not agents:
                return None
            reply = rng.choice(agents)
            cut = rng.randrange(len(turns))
            prefix = [(t.role, t.text) for t in turns[:cut]]
            pairs = [p for _ in range(times) for p in (("customer", rng.choice(customers)),
                                                       ("agent", reply))]
            base_id, group = base.transcript.id, base.group
        t = transcript(f"{base_id}+loop{rng.randrange(10**9)}", prefix + pairs)
        return Example(t, "augment:loop", group, labels={
            "escalation": np.float32(1.0), "repeat_inquiry": np.float32(1.0),
            "resolution": BOTTOM, "satisfaction": BOTTOM})

    def dropped(self, rng: random.Random) -> Example | None:
        if not self.dialogues:
            return None
        base = rng.choice(self.dialogues)
        turns = base.transcript.scored_turns
        given = base.turn_labels.get("solution_given")
        first_solution = next((k for k, t in enumerate(turns) if given is not None
                               and t.role == "agent" and given[k] >= 0.5), len(turns))
        ends = [k for k, t in enumerate(turns[:first_solution]) if t.role == "customer"
                and k < len(turns) - 1]
        if not ends:
            return None
        end = rng.choice(ends)
        t = transcript(f"{base.transcript.id}+dropped{end}",
                       [(x.role, x.text) for x in turns[:end + 1]])
        return Example(t, "augment:dropped", base.group,
                       turn_labels=_moved(base, t, list(range(end + 1))),
                       labels={"repeat_inquiry": np.float32(1.0)})


def _moved(base: Example, t, origin: list[int | None]) -> dict[str, np.ndarray]:
    """The base's turn labels for the new transcript, whose turn k was base turn origin[k]
    (None: a new turn, unlabelled)."""
    out = {}
    for target, values in base.turn_labels.items():
        moved = np.full((len(origin), *values.shape[1:]), np.nan, dtype=np.float32)
        for k, o in enumerate(origin):
            if o is not None:
                moved[k] = values[o]
        out[target] = moved
    return out


def _first_sentences(text: str, n: int) -> str:
    text = re.sub(r"\{\{[^}]*\}\}", "", text)
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(parts[:n])

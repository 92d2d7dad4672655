"""Training-time augmentations that teach behaviours no public dataset labels directly, and
break the shortcuts a model learns from them, built from real turns of the training split
(never from the dev or report splits) and, for two kinds, from customer turns the project wrote
itself (`written/`):

- "human_request": a real customer request for a human (Bitext contact_human_agent) or a
  complaint is inserted as a customer turn into a real dialogue, which is cut one agent turn
  later: escalation = 1, and the turn's asks_for_human / complaint signal = 1.
- "human_request_turn": the same dialogue, labelled at the turns instead: escalation became
  needed at the inserted turn and not at the customer turns before it (labels on the
  escalation head's hazard there, `turn_labels["escalation"]`), the conversation label left
  out. Without the negatives the head learns that the bases' customer turns escalate: most
  bases are USS dialogues, which have no escalation label of their own to say otherwise
  (benchmarks/README.md, rounds 15 and 16).
- "written_request_turn": "human_request_turn" with a request from `written/requests.txt`
  instead of Bitext's: Bitext's 161 requests are short templates ("I want to talk to a human
  agent"), the only request data in ../shared/data, and a model trained on them alone misses
  requests worded otherwise ("is there an actual person there?", a request inside a message
  about the problem). The lines were written for this by a session that had not read the
  behaviour pairs (tests/behaviour_pairs.jsonl, benchmarks/transfer_behaviours.jsonl).
- "person_mentioned": a customer turn from `written/mentions.txt`, one that mentions an
  agent, a person, a call or a name without asking for a human ("the technician came
  yesterday"), is inserted after an agent turn, never as the last turn: its asks_for_human
  and complaint = 0 and the escalation hazard at it = 0 (it did not make escalation needed);
  the base's conversation labels kept but satisfaction. The negatives that keep the written
  requests from teaching "a person is mentioned" instead of "a person is asked for".
- "short_turn": a real customer turn of a training helpdesk dialogue (STC-3), one its source
  labels as no request for a person, cut in place to its first 1-5 words: that turn's
  asks_for_human = 0, every other label left out (the cut may change what the conversation
  says). Bitext's requests are short and most real negatives are long, so a model can learn
  that a short customer turn in a helpdesk chat asks for a human; a name given on request is
  such a turn. Cut to 1-3 words, STC-3 dev customer turns are flagged 6-15% of the time
  where the same turns at full length are flagged 0.6-7% (`benchmarks/human_requests.py`,
  `short`; benchmarks/README.md, round 37, with what this kind did about it).
- "loop": the customer restates the problem in other words (paraphrases of one Bitext
  intent, or a dialogue's own customer turns) and the agent answers with the same reply
  each time, 3-5 times: escalation = 1, repeat_inquiry = 1, resolution and satisfaction at
  the bottom of the scale.
- "dropped": a dialogue cut right after a customer turn that states the problem, before any
  solution: repeat_inquiry = 1 (the customer has to come back).
- "closing_removed": an STC-3 dialogue (STC-3 is the only source with resolution), resolved
  or not, whose last customer turn is a closing pleasantry loses that turn and the agent
  turns after it: resolution, satisfaction and escalation kept (a thank-you is not what made
  the problem solved or open), repeat_inquiry left out (its STC-3 proxy reads the customer's
  last turn, which is now another one).
- "closing_added": an STC-3 dialogue, resolved or not, whose last customer turn is not a
  pleasantry gets another training dialogue's closing appended (its last customer turn, a
  pleasantry, with the agent's farewell after it when there is one): resolution, escalation
  and repeat_inquiry kept (politeness leaves the problem as solved or as open as it was),
  satisfaction left out (a sincere thank-you for the effort may change how satisfied the
  customer was).
  Both kinds draw from resolved and unresolved dialogues alike, so that in the augmented
  data a closing says nothing about resolution either way (until 0.4.0 they drew only against
  the natural correlation: closings removed from resolved dialogues, added to unresolved ones).
- "silent_fix": a resolved STC-3 dialogue cut right after its last agent turn that gives the
  solution (solution_given >= 0.5), so the fix is met with silence: resolution and
  escalation kept (the customer confirmed the fix in the original), satisfaction and
  repeat_inquiry left out (the customer's reaction they rest on was cut).
- "name_or_thanks": a real short customer turn giving a name (after the real agent turn that
  asked for it, into an STC-3 dialogue; such turns are rare, so the pair is drawn a third of
  the time when any exist) or thanking the agent (after an agent turn that asks nothing; no
  "no thank you", no "that's all" or goodbye) is inserted into a real dialogue, never as
  its last turn: that turn's asks_for_human = 0 and complaint = 0 (dissatisfied
  unlabelled); the base's conversation labels kept, but satisfaction is left out after a
  thank-you.
- "repeated_answer": the customer restates the problem while the agent gives near-duplicates
  of one real reply (a sentence dropped or swapped, or a common STC-3 opener in front) 3-5
  times, and the customer ends with a real frustrated turn (a USS turn every annotator rated
  below 3, or a Bitext complaint): escalation = 1, repeat_inquiry = 1, resolution and
  satisfaction at the bottom, breakdown = 1 on the 2nd and later answers (the first is
  unlabelled), and the last turn keeps its source's signals (dissatisfied = 1 from USS,
  complaint = 1 from Bitext).
- "two_turn_answered": a Bitext request and a reply, no closing: its own intent's reply
  (placeholders removed) gives resolution HIGH (half +1, half +2: the dataset's own full
  answer, not yet confirmed), repeat_inquiry = 0, escalation = 0; a reply for an unrelated
  intent gives resolution at the bottom and repeat_inquiry = 1 (escalation left out: one
  wrong answer need not call for a human). Escalation intents are not used: their reply is
  a handover whose outcome the two turns cannot show.
- "reworded_loop" (drawn only when named): a "loop" whose agent says the same thing in other
  words each time: the customer restates one Bitext request and each answer is the start of
  the reply to another request of that intent (the dataset's own rewordings of one answer,
  drawn from requests the customer does not make), 3-5 times; half end on the agent's last answer, half
  on a real frustrated customer turn (as "repeated_answer"). Labels as "repeated_answer":
  escalation = 1, repeat_inquiry = 1, resolution and satisfaction at the bottom, breakdown = 1
  on the 2nd and later answers. "loop" and "repeated_answer" repeat one reply near-verbatim,
  so a model can learn that a loop is a string match; an agent who rewords the same non-answer
  is stuck all the same (benchmarks/README.md, round 84).
- "fix_unresolved" (drawn only when named): "silent_fix"'s counterpart. A resolved STC-3
  dialogue cut right after its last agent turn that gives the solution, as there, and followed
  by the last customer turn of an STC-3 dialogue its annotators rated unresolved (one that
  answers an agent turn, neither a confirmation nor a pleasantry): the customer's last word
  after a fix is that the problem is still open. Resolution is that dialogue's; every other
  conversation label is left out, and the turn keeps its own turn labels. With "silent_fix"
  alone a model can learn that a concrete fix resolves whatever the customer answers. The
  turn answered another agent, so what it teaches is what the customer's last word says,
  not how it fits the fix (benchmarks/README.md, round 90).
- "written_two_turn" (drawn only when named): a question from `written/faq.jsonl` with the
  reply that answers it, labelled as a "two_turn_answered" right answer, or with the reply that
  evades it (marketing, "it depends", a link without the answer, an apology, another topic),
  labelled as a wrong one. An unrelated intent's reply is not what an evasive agent writes,
  and Bitext's replies are all one bot's; the file's 300 items span 15 domains, half in a
  human agent's wording and half in a bot's, written for this by a session that had not read
  the repository. Every third item is held out (`written_chats("held_out")`) to measure what
  the kind teaches (benchmarks/README.md, round 51). Not drawn by default: it needs no
  training data, so it would put the project's chats into a user's own training.

A closing pleasantry and a closing are as `qualaudit.closing` defines them.

Conversation labels the change makes unknowable are left out; turn labels move with their
turns. `Augmenter.make` spreads its n draws over the kinds in turn; a kind the training
data cannot make hands its draw to the next.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...closing import (
    CLOSING_CUES,
    agent_names,
    closing_at,
    is_pleasantry,
    last_pleasantry,
    pleasantry_at,
)
from ...echo import BANDS, content_words, echoes
from ...heads import ESCALATION_SIGNALS, p_positive
from ...schema import Transcript, Turn
from .examples import Example, empty_turn_labels, transcript

KINDS = ("human_request", "human_request_turn", "loop", "dropped", "closing_removed",
         "closing_added", "silent_fix", "name_or_thanks", "repeated_answer", "two_turn_answered",
         "written_request_turn", "person_mentioned", "short_turn")
# drawn only when named (see the module docstring)
OPT_IN = ("written_two_turn", "reworded_loop", "fix_unresolved")
# draws per round of KINDS: human requests (either labelling, Bitext's or written) three times,
# so that they stay about as common among the augmentations as before the later kinds, and the
# name, thanks and mention turns (asks_for_human = 0) do not outweigh them; short turns three
# times too, as the short requests they are the negatives of
WEIGHTS = {"human_request": 3, "human_request_turn": 3, "written_request_turn": 3, "short_turn": 3}
SHORT_WORDS = (1, 5)  # a short_turn keeps this many of its turn's first words
WRITTEN = Path(__file__).with_name("written")
BOTTOM = np.array([0.7, 0.3, 0.0, 0.0, 0.0], dtype=np.float32)
HIGH = np.array([0.0, 0.0, 0.0, 0.5, 0.5], dtype=np.float32)
ESCALATION_INTENTS = ("contact_human_agent", "complaint", "contact_customer_service")
COMPLAINT = ESCALATION_SIGNALS.index("complaint")
ASKS_FOR_HUMAN = ESCALATION_SIGNALS.index("asks_for_human")
DISSATISFIED = ESCALATION_SIGNALS.index("dissatisfied")
NAME = re.compile(r"[A-Z][A-Za-z]+ [A-Z][A-Za-z]+,?( \d+)?\.?")  # "LI Sheng, 13543407599"
FRUSTRATED = re.compile(r"\b(wrong|again|already|not what|i said|told you|asked for|useless|"
                        r"ridiculous|frustrat\w*|annoy\w*|terrible|awful|worst)\b", re.I)


def checked_kinds(kinds) -> tuple[str, ...]:
    """`kinds` as a tuple, or a ValueError naming what is not one of KINDS or OPT_IN."""
    kinds = tuple(kinds)
    if not kinds or not set(kinds) <= {*KINDS, *OPT_IN}:
        raise ValueError(f"augmentation kinds must be some of {KINDS + OPT_IN}, found {list(kinds)}")
    return kinds


class Augmenter:
    """Makes augmented examples from training examples; `make(n, rng)` draws n of them,
    spread over `kinds` (default every one of KINDS) in turn, each WEIGHTS times per round."""

    def __init__(self, examples: list[Example], kinds: tuple[str, ...] = KINDS) -> None:
        self.kinds = checked_kinds(kinds)
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
        self.answerable = [v for k, v in by_intent.items() if k not in ESCALATION_INTENTS]
        rated = [e for e in self.dialogues if "resolution" in e.labels]
        resolved = [e for e in rated if p_positive(e.labels["resolution"]) >= 0.5]
        self.closing_ended = [e for e in rated if _closing_at(e) is not None]
        self.open_ended = [e for e in rated if last_pleasantry(e.transcript.scored_turns) is None]
        self.fixes = [(e, k) for e in resolved if (k := _last_fix(e)) is not None]
        self.confirmations = [(e, k, said) for e in resolved for k in range(len(e.transcript.scored_turns))
                              if _confirms(e, k) and (said := _unthanked(e.transcript.scored_turns, k))]
        self.open_words = [(e, k) for e in rated if e.source == "stc3" and p_positive(
            e.labels["resolution"]) < 0.5 and (k := _last_word(e)) is not None]
        self.closings = [(e.group, [(x.role, x.text) for x in e.transcript.scored_turns[k:]])
                         for e in self.dialogues if (k := _closing_at(e)) is not None]
        self.thanks = [t.text for e in self.dialogues for t in e.transcript.scored_turns
                       if t.role == "customer" and _is_thanks(t.text)]
        self.names = [p for e in self.dialogues for p in _name_pairs(e)]
        self.frustrated = _frustrated_turns(examples, self.complaints)
        self.support = [e for e in self.dialogues if e.source == "stc3"]
        self.long_negatives = [(e, k) for e in self.support for k in _long_negatives(e)]
        self.openers = _openers(self.support)
        self.answers = [(e, k) for e in self.support for k in _fresh_answers(e)]
        self.written_requests = written_turns("requests")
        self.mentions = written_turns("mentions")
        self.chats = written_chats("train")

    def make(self, n: int, rng: random.Random) -> list[Example]:
        makers = [getattr(self, kind) for kind in self.kinds for _ in range(WEIGHTS.get(kind, 1))]
        out = []
        for k in range(n):
            for j in range(len(makers)):
                example = makers[(k + j) % len(makers)](rng)
                if example is not None:
                    out.append(example)
                    break
        return out

    def _paraphrases(self, rng: random.Random, times: int, sentences: tuple[int, int]
                     ) -> tuple[list[str], str, str]:
        """Up to `times` paraphrases of one Bitext request, the first 1-3 sentences of the
        dataset's reply to it, and the paraphrase group: a customer restating one problem."""
        members = rng.choice(self.intents)
        asks = [m.transcript.turns[0].text for m in rng.sample(members, min(times, len(members)))]
        return asks, _first_sentences(members[0].info["response"], rng.randint(*sentences)), members[0].group

    def human_request(self, rng: random.Random, at_turn: bool = False, written: bool = False
                      ) -> Example | None:
        if not self.dialogues or not (self.written_requests if written else
                                      self.requests or self.complaints):
            return None
        base = rng.choice(self.dialogues)
        complaint = not written and bool(self.complaints) and rng.random() < 0.3
        request = (rng.choice(self.written_requests) if written else
                   rng.choice(self.complaints if complaint else self.requests).transcript.turns[0].text)
        turns = list(base.transcript.scored_turns)
        # after an agent turn (or at the start), then at most one more agent turn
        slots = [k + 1 for k, t in enumerate(turns) if t.role == "agent"] or [0]
        at = rng.choice(slots)
        keep = turns[:at]
        tail = [t for t in turns[at:at + 2] if t.role == "agent"][:1]
        pairs = [(t.role, t.text) for t in keep] + [("customer", request)]
        pairs += [(t.role, t.text) for t in tail]
        t = transcript(f"{base.transcript.id}+request{rng.randrange(10**9)}", pairs)
        labels = _moved(base, t, list(range(at)) + [None] + [turns.index(x) for x in tail])
        signals = labels.setdefault("escalation_signal", empty_turn_labels(t, (3,)))
        signals[at] = np.nan
        signals[at, COMPLAINT] = float(complaint)
        if not complaint:
            signals[at, ASKS_FOR_HUMAN] = 1.0
        if at_turn:
            labels["escalation"] = empty_turn_labels(t)
            labels["escalation"][[k for k in range(at) if turns[k].role == "customer"]] = 0.0
            labels["escalation"][at] = 1.0
            kind = "written_request_turn" if written else "human_request_turn"
            return Example(t, f"augment:{kind}", base.group, turn_labels=labels)
        return Example(t, "augment:human_request", base.group, turn_labels=labels,
                       labels={"escalation": np.float32(1.0)})

    def human_request_turn(self, rng: random.Random) -> Example | None:
        return self.human_request(rng, at_turn=True)

    def written_request_turn(self, rng: random.Random) -> Example | None:
        return self.human_request(rng, at_turn=True, written=True)

    def person_mentioned(self, rng: random.Random) -> Example | None:
        if not (self.mentions and self.dialogues):
            return None
        base = rng.choice(self.dialogues)
        turns = base.transcript.scored_turns
        slots = [k + 1 for k in range(len(turns) - 1) if turns[k].role == "agent"]
        if not slots:
            return None
        at = rng.choice(slots)
        t, labels = _not_asking(base, at, [("customer", rng.choice(self.mentions))], "mention")
        labels.setdefault("escalation", empty_turn_labels(t))[at] = 0.0
        return Example(t, "augment:person_mentioned", base.group, turn_labels=labels,
                       labels=_kept(base, "resolution", "escalation", "repeat_inquiry"))

    def short_turn(self, rng: random.Random) -> Example | None:
        if not self.long_negatives:
            return None
        base, at = rng.choice(self.long_negatives)
        t = with_turn_cut(base.transcript, at, rng.randint(*SHORT_WORDS), f"{base.transcript.id}+short{at}")
        signals = empty_turn_labels(t, (len(ESCALATION_SIGNALS),))
        signals[at, ASKS_FOR_HUMAN] = 0.0
        return Example(t, "augment:short_turn", base.group,
                       turn_labels={"escalation_signal": signals})

    def loop(self, rng: random.Random) -> Example | None:
        times = rng.randint(3, 5)
        if not (self.intents or self.dialogues):
            return None
        if self.intents and (not self.dialogues or rng.random() < 0.5):
            asks, reply, group = self._paraphrases(rng, times, (1, 2))
            pairs = [p for ask in asks for p in (("customer", ask), ("agent", reply))]
            prefix, base_id = [], "bitext"
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
        return Example(t, "augment:loop", group, labels=_stuck_labels())

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
        return _prefix(base, end + 1, f"dropped{end}", "dropped", {"repeat_inquiry": np.float32(1.0)})

    def closing_removed(self, rng: random.Random) -> Example | None:
        return _without_closing(rng.choice(self.closing_ended)) if self.closing_ended else None

    def closing_added(self, rng: random.Random) -> Example | None:
        return self._with_closing(rng.choice(self.open_ended), rng) if self.open_ended else None

    def closing_pair(self, rng: random.Random) -> tuple[Example, Example] | None:
        """One dialogue with a closing pleasantry at its end and without it: a real closing
        removed (`closing_removed`) or another dialogue's added (`closing_added`), half of each
        when both can be made; the with-closing one first. For the training loss that asks the
        two to resolve alike (`TrainingArgs.closing_consistency`)."""
        if self.closing_ended and (not self.open_ended or rng.random() < 0.5):
            base = rng.choice(self.closing_ended)
            return base, _without_closing(base)
        if not self.open_ended:
            return None
        base = rng.choice(self.open_ended)
        added = self._with_closing(base, rng)
        return None if added is None else (added, base)

    def _with_closing(self, base: Example, rng: random.Random) -> Example | None:
        closings = [block for group, block in self.closings if group != base.group]
        if not closings:
            return None
        block = rng.choice(closings)
        turns = base.transcript.scored_turns
        pairs = [(x.role, x.text) for x in turns] + block
        t = transcript(f"{base.transcript.id}+closing{rng.randrange(10**9)}", pairs)
        return Example(t, "augment:closing_added", base.group,
                       turn_labels=_moved(base, t, [*range(len(turns)), *[None] * len(block)]),
                       labels=_kept(base, "resolution", "escalation", "repeat_inquiry"))

    def silent_fix(self, rng: random.Random) -> Example | None:
        if not self.fixes:
            return None
        base, fix = rng.choice(self.fixes)
        return _prefix(base, fix + 1, "silent", "silent_fix", _kept(base, "resolution", "escalation"))

    def fix_unresolved(self, rng: random.Random) -> Example | None:
        if not (self.fixes and self.open_words):
            return None
        return self._answered_openly(*rng.choice(self.fixes), rng)

    def reply_pair(self, rng: random.Random) -> tuple[Example, Example] | None:
        """One agent turn answered two ways: a resolved dialogue cut after the customer's reply
        that confirms it solved the problem (in words, its sentences of thanks taken out, so that
        the ranking pays for the confirmation and not for a thanks), and the same dialogue with
        an unresolved dialogue's last word in place of that reply (as `fix_unresolved`); the
        confirmed one first. For the training loss that asks resolution to rank the two
        (`TrainingArgs.reply_contrast`)."""
        if not (self.confirmations and self.open_words):
            return None
        base, reply, said = rng.choice(self.confirmations)
        t = _cut(base, reply, "confirmed", ("customer", said))
        confirmed = Example(t, "augment:fix_confirmed", base.group, labels=_kept(base, "resolution"),
                            turn_labels=_moved(base, t, list(range(reply + 1))))
        return confirmed, self._answered_openly(base, reply - 1, rng)

    def loop_pair(self, rng: random.Random) -> tuple[Example, Example] | None:
        """One agent turn given two ways after the customer spoke again: as a near-duplicate of
        the agent's answer before (`_varied`, a loop) and as the helpdesk dialogue's own new
        answer; the loop first, both ending there. For the training loss that asks breakdown to
        rank the two (`TrainingArgs.loop_contrast`)."""
        if not self.answers:
            return None
        base, k = rng.choice(self.answers)
        before = next(x.text for x in reversed(base.transcript.scored_turns[:k]) if x.role == "agent")
        looped = _cut(base, k, f"looped{rng.randrange(10**9)}", ("agent", _varied(before, self.openers, rng)))
        return (Example(looped, "augment:loop_answer", base.group),
                _prefix(base, k + 1, f"answered{k}", "new_answer", {}))

    def request_pair(self, rng: random.Random) -> tuple[Example, Example] | None:
        """One customer turn after an agent turn said two ways: as a written request for a
        human (`written/requests.txt`) and as the dialogue's own turn there (one its source does
        not label as a request) or, half the time, a written mention of a person
        (`written/mentions.txt`); each followed by the dialogue's next agent turn when there is
        one; the request first. For the training loss that asks escalation to rank the two
        (`TrainingArgs.request_contrast`)."""
        if not (self.written_requests and self.mentions and self.dialogues):
            return None
        base = rng.choice(self.dialogues)
        turns = base.transcript.scored_turns
        signals = base.turn_labels.get("escalation_signal")
        slots = [k for k in range(1, len(turns)) if turns[k].role == "customer" and turns[k - 1].role == "agent"
                 and (signals is None or signals[k, ASKS_FOR_HUMAN] != 1.0)]
        if not slots:
            return None
        at = rng.choice(slots)
        tail = [("agent", turns[at + 1].text)] if at + 1 < len(turns) and turns[at + 1].role == "agent" else []
        neutral = rng.choice(self.mentions) if rng.random() < 0.5 else turns[at].text
        tag = rng.randrange(10**9)
        request = rng.choice(self.written_requests)
        return (Example(_cut(base, at, f"request{tag}", ("customer", request), *tail), "augment:request", base.group),
                Example(_cut(base, at, f"neutral{tag}", ("customer", neutral), *tail), "augment:neutral", base.group))

    def _answered_openly(self, base: Example, fix: int, rng: random.Random) -> Example:
        """`base` cut after its agent turn `fix` and followed by an unresolved dialogue's last
        customer word, labelled with that dialogue's resolution."""
        source, at = rng.choice(self.open_words)
        t = _cut(base, fix + 1, f"open{rng.randrange(10**9)}", ("customer", source.transcript.scored_turns[at].text))
        labels = _moved(base, t, list(range(fix + 1)) + [None])
        for target, values in source.turn_labels.items():
            labels.setdefault(target, np.full((fix + 2, *values.shape[1:]), np.nan,
                                              dtype=np.float32))[-1] = values[at]
        return Example(t, "augment:fix_unresolved", base.group, turn_labels=labels,
                       labels={"resolution": source.labels["resolution"]})

    def name_or_thanks(self, rng: random.Random) -> Example | None:
        name = bool(self.names and self.support) and (not self.thanks or rng.random() < 1 / 3)
        if not (name or self.thanks and self.dialogues):
            return None
        # the name pairs are helpdesk turns: they go into helpdesk dialogues only
        base = rng.choice(self.support if name else self.dialogues)
        turns = base.transcript.scored_turns
        # a name answers the agent's request for it, so that pair goes before an agent turn;
        # a thank-you follows an agent turn that asked nothing; neither becomes the last turn
        before = "agent" if name else "customer"
        slots = [k + 1 for k in range(len(turns) - 1) if turns[k + 1].role == before
                 and turns[k].role != before and (name or "?" not in turns[k].text)]
        if not slots:
            return None
        at = rng.choice(slots)
        block = list(zip(("agent", "customer"), rng.choice(self.names))) if name else [
            ("customer", rng.choice(self.thanks))]
        t, labels = _not_asking(base, at, block, "name" if name else "thanks")
        kept = ("resolution", "escalation", "repeat_inquiry") + (("satisfaction",) if name else ())
        return Example(t, "augment:name_or_thanks", base.group, turn_labels=labels,
                       labels=_kept(base, *kept))

    def repeated_answer(self, rng: random.Random) -> Example | None:
        if not self.frustrated or not (self.intents or self.support):
            return None
        times = rng.randint(3, 5)
        if self.intents and (not self.support or rng.random() < 0.5):
            asks, reply, group = self._paraphrases(rng, times, (2, 3))
            base_id = "bitext"
        else:
            base = rng.choice(self.support)
            turns = base.transcript.scored_turns
            confirmed = base.turn_labels.get("solution_confirmed", empty_turn_labels(base.transcript))
            customers = [x.text for k, x in enumerate(turns) if x.role == "customer"
                         and not confirmed[k] >= 0.5 and not pleasantry_at(turns, k)]
            agents = [x.text for x in turns if x.role == "agent"]
            if not (customers and agents):
                return None
            asks = [rng.choice(customers) for _ in range(times)]
            reply = rng.choice(agents)
            base_id, group = base.transcript.id, base.group
        answers = [reply] + [_varied(reply, self.openers, rng) for _ in asks[1:]]
        last, last_signals = rng.choice(self.frustrated)
        pairs = [p for ask, answer in zip(asks, answers) for p in (("customer", ask), ("agent", answer))]
        t = transcript(f"{base_id}+repeated{rng.randrange(10**9)}", [*pairs, ("customer", last)])
        return Example(t, "augment:repeated_answer", group,
                       turn_labels=_repeated_turn_labels(t, last_signals), labels=_stuck_labels())

    def reworded_loop(self, rng: random.Random) -> Example | None:
        if not self.intents:
            return None
        times = rng.randint(3, 5)
        members = list(rng.choice(self.intents))
        rng.shuffle(members)
        asking, others = members[:times], members[times:]
        answers = list(dict.fromkeys(_first_sentences(m.info["response"], rng.randint(1, 2)) for m in others))
        if len(answers) < times:
            return None
        asks = [m.transcript.turns[0].text for m in asking]
        pairs = [p for ask, answer in zip(asks, answers[:times]) for p in (("customer", ask), ("agent", answer))]
        signals = None
        if self.frustrated and rng.random() < 0.5:
            last, signals = rng.choice(self.frustrated)
            pairs.append(("customer", last))
        t = transcript(f"bitext+reworded{rng.randrange(10**9)}", pairs)
        return Example(t, "augment:reworded_loop", asking[0].group,
                       turn_labels=_repeated_turn_labels(t, signals), labels=_stuck_labels())

    def two_turn_answered(self, rng: random.Random) -> Example | None:
        if not self.answerable:
            return None
        ask = rng.choice(rng.choice(self.answerable))
        intent = ask.info["intent"]
        unrelated = [v for v in self.answerable if not _related(v[0].info["intent"], intent)]
        wrong = bool(unrelated) and rng.random() < 0.5
        answer = rng.choice(rng.choice(unrelated)) if wrong else ask
        reply = _first_sentences(answer.info["response"], 6)
        t = transcript(f"{ask.transcript.id}+{'wrong' if wrong else 'answered'}",
                       [("customer", ask.transcript.turns[0].text), ("agent", reply)])
        return Example(t, "augment:two_turn_answered", ask.group,
                       turn_labels=_moved(ask, t, [0, None]), labels=_two_turn_labels(not wrong))

    def written_two_turn(self, rng: random.Random) -> Example | None:
        group, chat = rng.choice(self.chats)
        answered = rng.random() < 0.5
        reply = chat["answer"] if answered else chat["evasive"]
        t = transcript(f"{group}+{'answered' if answered else 'evaded'}",
                       [("customer", chat["question"]), ("agent", reply)])
        return Example(t, "augment:written_two_turn", group, labels=_two_turn_labels(answered))


def _stuck_labels() -> dict[str, np.ndarray]:
    """A conversation stuck in a loop: escalation and repeat inquiry needed, resolution and
    satisfaction at the bottom of the scale."""
    return {"escalation": np.float32(1.0), "repeat_inquiry": np.float32(1.0),
            "resolution": BOTTOM, "satisfaction": BOTTOM}


def _repeated_turn_labels(t: Transcript, last_signals: np.ndarray | None) -> dict[str, np.ndarray]:
    """breakdown = 1 on every agent answer after the first (the first unlabelled), and, when the
    last turn is a real frustrated customer turn, its source's escalation signals there."""
    breakdown = empty_turn_labels(t)
    breakdown[[k for k, x in enumerate(t.scored_turns) if x.role == "agent"][1:]] = 1.0
    labels = {"breakdown": breakdown}
    if last_signals is not None:
        labels["escalation_signal"] = empty_turn_labels(t, (len(ESCALATION_SIGNALS),))
        labels["escalation_signal"][-1] = last_signals
    return labels


def _two_turn_labels(answered: bool) -> dict[str, np.ndarray]:
    """A question answered in one reply: resolution HIGH (the full answer, not yet confirmed)
    and no repeat inquiry or escalation; not answered: resolution at the bottom and repeat
    inquiry 1, escalation left out (one wrong answer need not call for a human)."""
    if answered:
        return {"resolution": HIGH, "repeat_inquiry": np.float32(0.0), "escalation": np.float32(0.0)}
    return {"resolution": BOTTOM, "repeat_inquiry": np.float32(1.0)}


def written_turns(name: str) -> list[str]:
    """The customer turns of `written/<name>.txt`, one a line (see the module docstring)."""
    return (WRITTEN / f"{name}.txt").read_text(encoding="utf-8").splitlines()


def written_chats(part: str) -> list[tuple[str, dict[str, str]]]:
    """`(group, {"domain", "question", "answer", "evasive"})` for the items of
    `written/faq.jsonl` that training may draw ("train") or those held out to measure it
    ("held_out")."""
    return _written_items("faq", part)


# the written twin sets: the first, one bot manner beside one human manner; then three other
# manners (an LLM assistant beside a terse expert, a menu bot beside a warm agent, a formal
# brand voice beside a plain-spoken one), written blind and their empathy matched by a reviewer
TWIN_SETS = ("style_twins", "style_twins_manners")


def style_twins(part: str, name: str = "style_twins") -> list[tuple[Example, Example]]:
    """The twins of `written/<name>.jsonl` (one of TWIN_SETS) that training may draw ("train")
    or those held out to measure it ("held_out"): one conversation with the agent in a
    templated bot's wording and in a human agent's, the customer's turns and the content the
    same, written for this by sessions that had not read the repository. Unlabelled: the
    training loss that asks a head to score the two alike reads them
    (`TrainingArgs.style_consistency`)."""
    if name not in TWIN_SETS:
        raise ValueError(f"no twin set {name!r}; known: {', '.join(TWIN_SETS)}")
    twins = []
    for group, item in _written_items(name, part):
        twins.append(tuple(Example(transcript(f"{item['id']}/{style}", [(t["role"], t["text"]) for t in item[style]],
                                              agent_type=agent_type), "written_style", group)
                           for style, agent_type in (("bot", "ai"), ("human", "human"))))
    return twins


def _written_items(name: str, part: str) -> list[tuple[str, dict]]:
    """`(group, item)` for the lines of `written/<name>.jsonl` in `part`: "held_out" is every
    third line (k % 3 == 2), never trained on; "train" the others."""
    if part not in ("train", "held_out"):
        raise ValueError(f"part must be 'train' or 'held_out', found {part!r}")
    lines = (WRITTEN / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [(f"written_{name}:{k}", json.loads(line))
            for k, line in enumerate(lines) if (k % 3 == 2) == (part == "held_out")]


def with_turn_cut(t: Transcript, at: int, words: int | None, tid: str) -> Transcript:
    """`t`'s scored turns with turn `at` cut in place to its first `words` words (None: kept
    whole), as transcript `tid`: a short_turn, and the cut that measures the shortcut
    (benchmarks/human_requests.py)."""
    turns = t.scored_turns
    text = turns[at].text if words is None else " ".join(turns[at].text.split()[:words])
    return transcript(tid, [(x.role, text if k == at else x.text) for k, x in enumerate(turns)])


def _long_negatives(example: Example) -> list[int]:
    """The customer turns of `example` longer than a short_turn keeps and labelled as no
    request for a person: the turns a short_turn cuts."""
    signals = example.turn_labels.get("escalation_signal")
    if signals is None:
        return []
    return [k for k, x in enumerate(example.transcript.scored_turns) if x.role == "customer"
            and len(x.text.split()) > SHORT_WORDS[1] and signals[k, ASKS_FOR_HUMAN] == 0.0]


def _is_thanks(text: str) -> bool:
    """A pleasantry that thanks the agent ("Thank you so much!"), not one that declines an
    offer ("No thank you") or ends the talk ("That's all, bye"): it goes mid-dialogue."""
    words = set(re.findall(r"[a-z']+", text.lower()))
    return (is_pleasantry(text) and bool({"thank", "thanks", "appreciate"} & words)
            and not {"no", "nope", "bye", "goodbye", "all", "everything"} & words)


def _not_asking(base: Example, at: int, block: list[tuple[str, str]], tag: str
                ) -> tuple[Transcript, dict[str, np.ndarray]]:
    """The base dialogue with `block` inserted before its scored turn `at`, and its turn labels
    moved along: the block's last turn, a customer's, labelled as neither a complaint nor a
    request for a human."""
    turns = base.transcript.scored_turns
    pairs = [(x.role, x.text) for x in turns[:at]] + block + [(x.role, x.text) for x in turns[at:]]
    t = transcript(f"{base.transcript.id}+{tag}{at}", pairs)
    labels = _moved(base, t, [*range(at), *[None] * len(block), *range(at, len(turns))])
    signals = labels.setdefault("escalation_signal", empty_turn_labels(t, (3,)))
    signals[at + len(block) - 1, [COMPLAINT, ASKS_FOR_HUMAN]] = 0.0
    return t, labels


def _cut(base: Example, end: int, suffix: str, *after: tuple[str, str]) -> Transcript:
    """The base dialogue's first `end` scored turns, then the `after` turns (role, text)."""
    return transcript(f"{base.transcript.id}+{suffix}",
                      [*((x.role, x.text) for x in base.transcript.scored_turns[:end]), *after])


def _prefix(base: Example, end: int, suffix: str, kind: str, labels: dict[str, np.ndarray]) -> Example:
    """The base dialogue cut to its first `end` scored turns, its turn labels moved along."""
    t = _cut(base, end, suffix)
    return Example(t, f"augment:{kind}", base.group, turn_labels=_moved(base, t, list(range(end))),
                   labels=labels)


def _without_closing(base: Example) -> Example:
    return _prefix(base, _closing_at(base), "noclosing", "closing_removed",
                   _kept(base, "resolution", "satisfaction", "escalation"))


def _kept(base: Example, *targets: str) -> dict[str, np.ndarray]:
    """The base's conversation labels the augmentation cannot have changed."""
    return {k: base.labels[k] for k in targets if k in base.labels}


def _closing_at(e: Example) -> int | None:
    return closing_at(e.transcript.scored_turns)


def _last_fix(e: Example) -> int | None:
    """The last agent turn giving the solution, when the customer said something after it."""
    given = e.turn_labels.get("solution_given")
    turns = e.transcript.scored_turns
    if given is None:
        return None
    fixes = [k for k, x in enumerate(turns[:-1]) if x.role == "agent" and given[k] >= 0.5]
    return fixes[-1] if fixes and any(x.role == "customer" for x in turns[fixes[-1]:]) else None


def _confirms(e: Example, k: int) -> bool:
    """Turn k is the customer's answer to an agent turn, and confirms the solution in words,
    not with a pleasantry."""
    turns = e.transcript.scored_turns
    confirmed = e.turn_labels.get("solution_confirmed", empty_turn_labels(e.transcript))
    return (k > 0 and turns[k].role == "customer" and turns[k - 1].role == "agent"
            and confirmed[k] >= 0.5 and not pleasantry_at(turns, k))


def _fresh_answers(e: Example) -> list[int]:
    """The agent turns that answer a customer's new turn (no pleasantry) after an earlier agent
    answer, and repeat no earlier agent turn (echo below the first band): the new answers a
    loop could have been. Both answers say something (4 content words or more)."""
    turns = e.transcript.scored_turns
    echo = echoes([(x.role, x.text) for x in turns])
    said = [len(content_words(x.text)) >= 4 for x in turns]
    return [k for k, x in enumerate(turns) if x.role == "agent" and said[k] and echo[k] < BANDS[0]
            and k > 0 and turns[k - 1].role == "customer" and not pleasantry_at(turns, k - 1)
            and (j := next((j for j in range(k - 2, -1, -1) if turns[j].role == "agent"), None)) is not None
            and said[j]]


def _unthanked(turns: Sequence[Turn], k: int) -> str:
    """Turn k's text without its sentences that only thank or say goodbye ("It works now. Thank
    you Marco!" -> "It works now.", the agent's name read as in a closing); "It is OK now."
    stays, "ok" being no thanks."""
    thanks = CLOSING_CUES - {"ok", "okay"}
    names = agent_names(turns[:k])
    return " ".join(s for s in _sentences(turns[k].text) if not (
        is_pleasantry(s, names) and thanks & set(re.findall(r"[a-z']+", s.lower()))))


def _last_word(e: Example) -> int | None:
    """The last customer turn, when it answers an agent turn and neither confirms a solution
    nor is a pleasantry."""
    turns = e.transcript.scored_turns
    confirmed = e.turn_labels.get("solution_confirmed", empty_turn_labels(e.transcript))
    last = max((k for k, x in enumerate(turns) if x.role == "customer"), default=None)
    # `not last`: no customer turn, or the opening one, which answers no agent
    if not last or turns[last - 1].role != "agent" or confirmed[last] >= 0.5:
        return None
    return None if pleasantry_at(turns, last) else last


def _name_pairs(e: Example) -> list[tuple[str, str]]:
    """(agent turn asking for a name, the customer's short reply giving one) in a dialogue."""
    turns = e.transcript.scored_turns
    return [(a.text, c.text) for a, c in zip(turns, turns[1:])
            if a.role == "agent" and c.role == "customer" and "name" in a.text.lower()
            and NAME.fullmatch(c.text)]


def _frustrated_turns(examples: list[Example], complaints: list[Example]) -> list[tuple[str, np.ndarray]]:
    """Real frustrated customer turns with their escalation signals: USS turns every
    annotator rated below 3 (dissatisfied = 1) that also say so in words (a rating judges
    the agent turn before, so most such turns read neutral), and Bitext complaints."""
    out = []
    for e in examples:
        signals = e.turn_labels.get("escalation_signal")
        if e.source != "uss" or signals is None:
            continue
        for k, x in enumerate(e.transcript.scored_turns):
            if (x.role == "customer" and signals[k, DISSATISFIED] == 1.0
                    and FRUSTRATED.search(x.text) and "thank" not in x.text.lower()):
                out.append((x.text, signals[k]))
    row = np.full(len(ESCALATION_SIGNALS), np.nan, dtype=np.float32)
    for e in complaints:
        labelled = e.turn_labels.get("escalation_signal")
        out.append((e.transcript.turns[0].text, labelled[0] if labelled is not None else row))
    return out


def _openers(dialogues: list[Example]) -> list[str]:
    """Short first sentences that open several real helpdesk turns ("We are sorry for the
    inconvenience."): generic enough to put in front of any reply."""
    counts = Counter(_first_sentences(x.text, 1) for e in dialogues
                     for x in e.transcript.scored_turns if x.role == "agent")
    return sorted(s for s, c in counts.items() if c >= 3 and 2 <= len(s.split()) <= 8
                  and s[-1] in ".!")


def _varied(reply: str, openers: list[str], rng: random.Random) -> str:
    """A near-duplicate of a reply: one sentence dropped, two swapped, or a real opener put
    in front, so a loop is not only an exact repetition."""
    parts = _sentences(reply)
    ways = ["opener"] * bool(openers) + ["drop", "swap"] * (len(parts) >= 2)
    if not ways:
        return reply
    way = rng.choice(ways)
    if way == "opener":
        return f"{rng.choice(openers)} {reply}"
    k = rng.randrange(len(parts) - 1)
    if way == "drop":
        return " ".join(parts[:k] + parts[k + 1:])
    return " ".join(parts[:k] + [parts[k + 1], parts[k]] + parts[k + 2:])


def _related(intent: str, other: str) -> bool:
    """Whether two Bitext intents share a word stem (cancel_order, check_cancellation_fee):
    a reply for a related intent may partly answer, so it is no clear wrong answer."""
    return bool({w[:4] for w in intent.split("_")} & {w[:4] for w in other.split("_")})


def _moved(base: Example, t: Transcript, origin: list[int | None]) -> dict[str, np.ndarray]:
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


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])(?<!\d\.)\s+", text.strip())  # "1." starts a step, not a sentence


def _first_sentences(text: str, n: int) -> str:
    """The first n sentences of a Bitext reply, its {{placeholders}} removed."""
    return " ".join(_sentences(re.sub(r"\{\{[^}]*\}\}", "", text))[:n])

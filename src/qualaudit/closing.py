"""What a conversation's closing is: the customer's closing pleasantries at its end, and every
turn after them. Such a turn carries no fact about the problem, so the heads a model names in
`ModelConfig.closing_apart` never read it, and the training augmentations add and remove
closings to teach the other heads the same.

A closing pleasantry is a customer turn of at most 20 words, no question mark, made only of
closing words (thanks, ok, bye, great, that's all, have a nice day, thanks for your
assistance, you've been a great help, ...) and holding at least one of thank / thanks / thx /
ok / okay / bye / goodbye / cheers / appreciate: "thanks but it still doesn't work" has words
outside the list, so it is not one, nor is a turn whose closing words say the help failed,
ask for more or complain ("thanks, it was no help", "ok thanks i need help", "ok thanks, would
you do this for me", "ok thank you, i am done with you"). The agent's name, thanked or greeted
("Got it, thank you Marco!", "thanks Marco have a nice day"), counts as a closing word when an
agent turn before it wrote the word capitalised ("Hi, I'm Marco"; any capitalised word of the
agent's counts, a name or not): a capitalised word the agent never wrote ("ok thanks, Human!")
may be a request or a complaint, and the words after a name are read as any others ("thanks
Marco sent the wrong one" is content). A lower-cased name ("thank you marco") is not taken:
every word the agent wrote would then count ("thanks refund"). English only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence

from .schema import Transcript, Turn

CLOSING_CUES = frozenset({"thank", "thanks", "thx", "ok", "okay", "bye", "goodbye", "cheers",
                          "appreciate"})
CLOSING_WORDS = CLOSING_CUES | frozenset(
    "you u so very much a lot bunch again alright all right good great perfect awesome nice "
    "wonderful fine it i i'm im that that's thats is was will be for your the help helpful "
    "have day one everything no nope yes yeah got set done need needed now then oh well "
    "and too today kind sir".split()) | frozenset(
    # words of the training sources' (USS, STC-3) closing thanks that the list above missed,
    # kept where they state no problem, fix, request or negation, and a few by analogy
    # (goodnight, morning, afternoon, weekend, grateful, many, appreciated): round 116
    "to of me my with at about also this these just really quite sure been you've i'll that'll "
    "am are were would should do else anything anyway anyways think hope care take "
    "suggestions suggestion information info recommendations ideas assistance helping patience "
    "time night goodnight evening morning afternoon weekend sounds enough cool excellent happy "
    "thankful grateful definitely many appreciated".split())


# a capitalised word the customer thanks or greets, then punctuation, a lower-case word, "I" or
# the end: "thank you Marco!", "thanks Marco have a nice day", "thanks so much, Priya.", "bye Sarah"
_ADDRESSED = re.compile(r"\b(?i:thanks|thank you|thx|cheers|bye|goodbye)"
                        r"(?:\s+(?i:so much|very much|a lot|again))?,?\s+([A-Z][a-z]+)"
                        r"(?=\s*(?:[,.!]|$)|\s+(?:[a-z]|I\b))")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+\b")
# closing words that together say the help failed ("no help", "no good", "i need help"), ask
# for more ("i need assistance", "would you do this", "you should help me", "do it again") or
# complain ("i am done with you", "this is too much"), round 132; not "you should be all set",
# "all done with you today" or "thank you too much"
_FAILED = re.compile(r"\bno\s+(?:help|good|great)\b|\bneed(?:s|ed)?\s+help\b"
                     r"|\bneeds?\s+(?:assistance|information|info)\b|\bwould\s+you\b"
                     r"|\byou\s+should\s+(?!be\b)\w|\b(?:do|try)\s+(?:it|this|that)\s+again\b"
                     r"|(?<!all )\bdone\s+with\s+you\b|\b(?:is|was|it's|that's)\s+too\s+much\b")


@dataclasses.dataclass(frozen=True)
class ClosingReading:
    """Which customer turns count as closing pleasantries: the words one may be made of, the
    cues one must hold, its length limit and what says the help failed (the agent's name rule is
    the module's). The library reads `READING`; a benchmark that must not move when the
    library's reading does fixes its own (`benchmarks/quality.py` cuts some protocol
    conversations by one)."""

    words: frozenset[str] = CLOSING_WORDS
    max_words: int = 20
    cues: frozenset[str] = CLOSING_CUES
    failed: re.Pattern[str] = _FAILED

    def is_pleasantry(self, text: str, names: Collection[str] = ()) -> bool:
        """Whether a customer turn only closes politely (see the module docstring); `names`: the
        lower-cased names it may thank or greet (`agent_names`)."""
        lowered = text.lower()
        words = re.findall(r"[a-z0-9']+", lowered)
        said = set(words)
        if "?" in text or not 0 < len(words) <= self.max_words or not self.cues & said:
            return False
        if self.failed.search(lowered):  # on the text: "No, great, thanks!" is no "no great"
            return False
        rest = said - self.words
        return not rest or rest <= {w for name in _ADDRESSED.findall(text) if (w := name.lower()) in names}

    def pleasantry_at(self, turns: Sequence[Turn], k: int) -> bool:
        """Whether turn k of a conversation only closes politely, thanking by name only the names
        the agent turns before it wrote."""
        text = turns[k].text
        return self.is_pleasantry(text, agent_names(turns[:k]) if _ADDRESSED.search(text) else ())

    def last_pleasantry(self, turns: Sequence[Turn]) -> int | None:
        """The index of the last customer turn when it is a closing pleasantry."""
        last = max((k for k, x in enumerate(turns) if x.role == "customer"), default=None)
        return last if last is not None and self.pleasantry_at(turns, last) else None

    def closing_at(self, turns: Sequence[Turn]) -> int | None:
        """The index of the last customer turn when it is a closing pleasantry and at least a
        customer and an agent turn come before it: where the dialogue's last closing starts."""
        last = self.last_pleasantry(turns)
        return last if last is not None and last >= 2 else None

    def closing_start(self, turns: Sequence[Turn]) -> int:
        """Where the whole closing starts ("ok thanks" / "anything else?" / "no, bye" is one
        closing): the index of its first turn, `len(turns)` when there is none."""
        end = len(turns)
        while (k := self.closing_at(turns[:end])) is not None:
            end = k
        return end

    def without_closing(self, t: Transcript) -> Transcript:
        """The transcript cut before its closing (system turns after the cut go with it); itself
        when it has none."""
        scored = t.scored_turns
        start = self.closing_start(scored)
        if start == len(scored):
            return t
        cut = scored[start].index
        return dataclasses.replace(t, turns=tuple(x for x in t.turns if x.index < cut))


def agent_names(turns: Sequence[Turn]) -> frozenset[str]:
    """The capitalised words of the agent turns, lower-cased: where a name the customer thanks
    must come from (a turn's `speaker` is often the export's role label, so it is not read)."""
    return frozenset(w.lower() for x in turns if x.role == "agent" for w in _CAPITALISED.findall(x.text))


READING = ClosingReading()
is_pleasantry = READING.is_pleasantry
pleasantry_at = READING.pleasantry_at
last_pleasantry = READING.last_pleasantry
closing_at = READING.closing_at
closing_start = READING.closing_start
without_closing = READING.without_closing

"""What a conversation's closing is: the customer's closing pleasantries at its end, and every
turn after them. Such a turn carries no fact about the problem, so the heads a model names in
`ModelConfig.closing_apart` never read it, and the training augmentations add and remove
closings to teach the other heads the same.

A closing pleasantry is a customer turn of at most 12 words, no question mark, made only of
closing words (thanks, ok, bye, great, that's all, have a nice day, ...) and holding at least
one of thank / thanks / thx / ok / okay / bye / goodbye / cheers / appreciate: "thanks but it
still doesn't work" has words outside the list, so it is not one. A capitalised name that
ends a thanks or goodbye counts as a closing word ("Got it, thank you Marco!"). English only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from .schema import Transcript, Turn

CLOSING_CUES = frozenset({"thank", "thanks", "thx", "ok", "okay", "bye", "goodbye", "cheers",
                          "appreciate"})
CLOSING_WORDS = CLOSING_CUES | frozenset(
    "you u so very much a lot bunch again alright all right good great perfect awesome nice "
    "wonderful fine it i i'm im that that's thats is was will be for your the help helpful "
    "have day one everything no nope yes yeah got set done need needed now then oh well "
    "and too today kind sir".split())


# a name the customer thanks or greets, ending its phrase: "thank you Marco!", "bye, Sarah."
_ADDRESSED = re.compile(r"\b(?i:thanks|thank you|thx|cheers|bye|goodbye|much|a lot|again),?\s+"
                        r"([A-Z][a-z]+)(?=\s*(?:[,.!]|$))")


def is_pleasantry(text: str) -> bool:
    """Whether a customer turn only closes politely (see the module docstring)."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    named = {name.lower() for name in _ADDRESSED.findall(text)}
    return ("?" not in text and 0 < len(words) <= 12 and set(words) - named <= CLOSING_WORDS
            and bool(CLOSING_CUES & set(words)))


def last_pleasantry(turns: Sequence[Turn]) -> int | None:
    """The index of the last customer turn when it is a closing pleasantry."""
    last = max((k for k, x in enumerate(turns) if x.role == "customer"), default=None)
    return last if last is not None and is_pleasantry(turns[last].text) else None


def closing_at(turns: Sequence[Turn]) -> int | None:
    """The index of the last customer turn when it is a closing pleasantry and at least a
    customer and an agent turn come before it: where the dialogue's last closing starts."""
    last = last_pleasantry(turns)
    return last if last is not None and last >= 2 else None


def closing_start(turns: Sequence[Turn]) -> int:
    """Where the whole closing starts ("ok thanks" / "anything else?" / "no, bye" is one
    closing): the index of its first turn, `len(turns)` when there is none."""
    end = len(turns)
    while (k := closing_at(turns[:end])) is not None:
        end = k
    return end


def without_closing(t: Transcript) -> Transcript:
    """The transcript cut before its closing (system turns after the cut go with it); itself
    when it has none."""
    scored = t.scored_turns
    start = closing_start(scored)
    if start == len(scored):
        return t
    cut = scored[start].index
    return dataclasses.replace(t, turns=tuple(x for x in t.turns if x.index < cut))

"""How much a turn repeats an earlier turn of its role: its "echo".

A bot that gives the same answer again, reworded, while the customer restates the problem is
the plainest loop in support. The encoder sees the earlier turns a window holds, but a linear
head over the turn state did not learn the repetition from labelled loops (benchmarks/README.md,
rounds 54-56). So the echo is read from the words themselves, on the input side with the
windows (`batching.WindowBuilder`, for a model that reads it), and the turn heads that
`ModelConfig.echo` names add a learned vector for its band.

echo_t = the largest Jaccard similarity between turn t's content words (lower-cased words
less `STOP_WORDS`) and those of an earlier turn of the same role; 0 for the first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOP_WORDS = frozenset(
    "a an the and or but if so of to in on at by for from with as is are was were be been being "
    "am do does did have has had i me my we us our you your it its this that these those there "
    "he she they them their his her will would can could shall should may might must not no "
    "please just".split())
BANDS = (0.25, 0.5, 0.75)  # band k (1-3) starts here; below the first, band 0 adds nothing


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in WORD.findall(text.lower()) if w not in STOP_WORDS)


def echoes(turns: Sequence[tuple[str, str]]) -> list[float]:
    """Each (role, text) turn's echo, in order."""
    seen: dict[str, list[frozenset[str]]] = {}
    out = []
    for role, text in turns:
        words = content_words(text)
        earlier = seen.setdefault(role, [])
        out.append(max((len(words & e) / len(words | e) for e in earlier if words | e), default=0.0))
        earlier.append(words)
    return out


def band(echo: float) -> int:
    """0 below BANDS[0], else 1 + how many further thresholds echo reaches."""
    return sum(echo >= b for b in BANDS)

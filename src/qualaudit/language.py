"""Which language a transcript is in, so that a conversation in a language the model was not
trained on is flagged (or skipped) instead of scored silently as if it were English.

py3langid (langid.py's model, shipped in its wheel; about 0.3 ms a transcript) reads the
text of the customer and agent turns, the first `_MAX_CHARS` characters. A text with fewer
than `_MIN_LETTERS` letters, or whose best language has a probability under
`_MIN_CONFIDENCE`, is "und" (undetermined): too short to tell.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from .errors import InputError
from .schema import Transcript

log = logging.getLogger("qualaudit.language")

UNDETERMINED = "und"
_MAX_CHARS = 2000
_MIN_LETTERS = 20
_MIN_CONFIDENCE = 0.5


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=4096)
def detect_text(text: str) -> tuple[str, float]:
    """(ISO 639-1 code or "und", probability) of `text`. Cached: with `--languages` a
    transcript is checked before it is scored and its row asks again a chunk later."""
    text = text[:_MAX_CHARS]
    if sum(c.isalpha() for c in text) < _MIN_LETTERS:
        return UNDETERMINED, 0.0
    language, probability = _identifier().classify(text)
    return (language if probability >= _MIN_CONFIDENCE else UNDETERMINED), float(probability)


def detect_language(transcript: Transcript) -> str:
    """The language of a transcript's customer and agent turns, or "und"."""
    text, size = [], 0
    for turn in transcript.scored_turns:
        text.append(turn.text)
        size += len(turn.text) + 1
        if size >= _MAX_CHARS:
            break
    return detect_text("\n".join(text))[0]


def language_warnings(transcript_id: str, language: str, known: Sequence[str]) -> list[str]:
    """A `warnings` entry (and a log line) when `language` is not one of the model's `known`
    languages; none for "und"."""
    if language == UNDETERMINED or language in known:
        return []
    log.warning("transcript %r is in %r, which the model was not trained on (%s): its scores "
                "may mean little", transcript_id, language, ", ".join(known))
    return [f"language {language!r} is not one the model was trained on ({', '.join(known)}); "
            "its scores may mean little"]


def language_rejection(transcript: Transcript, languages: Sequence[str]) -> InputError | None:
    """The error rejecting `transcript` when its detected language is not one of `languages`
    ("und", too short to tell, passes), else None."""
    language = detect_language(transcript)
    if language == UNDETERMINED or language in languages:
        return None
    return InputError(
        f"detected language {language!r}, not one of --languages {','.join(languages)}",
        source=transcript.source, line=transcript.line, transcript_id=transcript.id,
        field="language", hint="Score it with a model trained on that language, or leave out "
        "--languages to score it anyway (its row then carries a warning)")

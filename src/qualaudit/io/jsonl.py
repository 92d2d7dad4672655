"""The one JSON Lines parser: each line of a transcript, score, label or utterance file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import UTF8_HINT, normalize_id


def json_line(data: bytes, number: int, source: str,
              id_keys: tuple[str, ...] = ()) -> tuple[int, Any] | InputError | None:
    """(line number, parsed value) of one line, None when it is blank, or an InputError.

    The id of a line that is not valid UTF-8 is read anyway when it can be (the first of
    `id_keys` present), so that the error names the transcript it rejects.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputError(
            f"invalid UTF-8 at byte {exc.start + 1} of the line (0x{data[exc.start]:02x})",
            source=source, line=number, transcript_id=_guess_id(data, id_keys), hint=UTF8_HINT,
        )
    if number == 1:
        text = text.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        return number, json.loads(text)
    except json.JSONDecodeError as exc:
        return InputError(f"not valid JSON: {exc.msg} at column {exc.colno}",
                          source=source, line=number,
                          hint="Each line must be one complete JSON object (JSON Lines)")


def json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; the first bad line (not
    UTF-8, not JSON, not an object) raises InputError naming the file and line. For files read
    whole or not at all (scores, labels); transcripts are read on with errors as values."""
    source = str(path)
    with open(path, "rb") as handle:
        for number, data in enumerate(handle, 1):
            item = json_line(data, number, source)
            if isinstance(item, InputError):
                raise item
            if item is None:
                continue
            if not isinstance(item[1], dict):
                raise InputError(f"expected one JSON object per line, found "
                                 f"{type(item[1]).__name__}", source=source, line=number)
            yield item


def _guess_id(data: bytes, id_keys: tuple[str, ...]) -> str | None:
    """The id of a line that is not valid UTF-8, when it can be read anyway (for the error)."""
    if not id_keys:
        return None
    try:
        obj = json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        return None
    key = next((k for k in id_keys if k in obj), None) if isinstance(obj, dict) else None
    return normalize_id(obj[key]) if key is not None else None

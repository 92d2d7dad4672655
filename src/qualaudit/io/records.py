"""The raw record every reader yields, its validation into a `Transcript`, duplicate-id checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ..errors import InputError
from ..normalize import make_transcript, normalize_id
from ..redact import redact_text
from ..schema import Transcript

_log = logging.getLogger("qualaudit.io")

_TABLE_DUPLICATE_HINT = ("Rows of one conversation must be contiguous: sort the table by the "
                         "id column")
_OBJECT_DUPLICATE_HINT = "Each transcript needs its own id: rename or remove the duplicate"


def _valid_only(records: Iterator[Transcript | InputError], on_error: str) -> Iterator[Transcript]:
    for record in records:
        if isinstance(record, Transcript):
            yield record
        elif on_error == "raise":
            raise record
        else:
            _log.warning("skipped a transcript: %s", redact_text(str(record)))


@dataclass
class _Raw:
    """One transcript's raw parts before validation, and how to point back into the input.

    `locate(i, part)` gives the line (or row) and field name of part "role", "text",
    "timestamp", "agent_type" or "index" of raw turn i, so that errors name the user's own
    column or key. `origin` is the (source, line) a Transcript passed in was first read from.
    """

    id: Any
    line: int
    turns: list[dict[str, Any]]
    locate: Callable[[int, str], tuple[int, str]]
    id_field: str
    agent_type: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    n_input_turns: int | None = None
    origin: tuple[str, int | None] | None = None


@dataclass
class ReadProgress:
    """How far a reader has read its file, for a progress bar against the file's size.

    `total_bytes` is the size of the file read (a ConvoKit corpus: its utterances.jsonl), set
    when `iter_records` opens it; `bytes_read` is how many of its bytes have been read so far:
    the lines read for JSONL and CSV/TSV, the share of rows read times the size for Parquet.
    It equals `total_bytes` once the reader is done. A source that is not a file (DataFrame,
    Dataset, Python objects) leaves `total_bytes` None and `bytes_read` 0. A reader fills it
    in as it goes (from the prefetching thread, when the scorer has one); others only read it.

    Example:
        >>> progress = ReadProgress()
        >>> records = iter_records("chats.jsonl", progress=progress)
        >>> first = next(records); progress.bytes_read / progress.total_bytes
    """

    bytes_read: int = 0
    total_bytes: int | None = None


class _Stream(NamedTuple):
    records: Iterable[_Raw | InputError]
    source: str
    unit: str  # what `line` counts here: "line", "row" or "item"
    duplicate_hint: str | None  # None where records are grouped by id, so never duplicates


def _checked(stream: _Stream, role_map: Mapping[str, str]) -> Iterator[Transcript | InputError]:
    """Validate each record, rejecting any later occurrence of an id (never merged)."""
    seen: dict[str, int | None] = {}
    for record in stream.records:
        if isinstance(record, InputError):
            if record.transcript_id is not None:
                seen.setdefault(record.transcript_id, record.line)
            yield record
            continue
        key = normalize_id(record.id)
        if key is not None and key in seen:
            yield InputError(
                f"duplicate id {key!r}, first seen at {stream.unit} {seen[key]}",
                source=stream.source, line=record.line, transcript_id=key, field=record.id_field,
                hint=stream.duplicate_hint,
            )
            continue
        if key is not None:
            seen[key] = record.line
        yield _build(record, role_map, stream.source)


def _build(raw: _Raw, role_map: Mapping[str, str], source: str) -> Transcript | InputError:
    try:
        transcript = make_transcript(raw.id, raw.turns, agent_type=raw.agent_type,
                                     metadata=raw.metadata, role_map=role_map, source=source,
                                     line=raw.line, n_input_turns=raw.n_input_turns)
    except InputError as exc:
        return _relocated(exc, raw)
    if raw.origin is not None:
        transcript = replace(transcript, source=raw.origin[0], line=raw.origin[1])
    return transcript


def _relocated(exc: InputError, raw: _Raw) -> InputError:
    """The error with make_transcript's (turn, part) named as in the input: line, key or column."""
    if exc.turn is not None:
        line, name = raw.locate(exc.turn, exc.part or "")
    elif exc.part == "id":
        line, name = exc.line, raw.id_field
    else:
        return exc
    return InputError(exc.reason, hint=exc.hint, source=exc.source, line=line,
                      transcript_id=exc.transcript_id, field=name, turn=exc.turn, part=exc.part)

"""Transcript readers: JSONL, CSV/TSV, Parquet, ConvoKit, pandas and datasets -> `Transcript`s.

Every reader streams (a line, a chunk or a batch at a time) and only reshapes raw records
into what `normalize.make_transcript` validates. A bad transcript becomes an `InputError`
value, located by file, line or row, id and field, so one bad record never stops a run.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import json
import logging
import numbers
import os
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import InputError
from .normalize import UTF8_HINT, is_missing, make_transcript, normalize_id, parse_role_map
from .schema import Transcript, Turn

__all__ = ["FORMATS", "ColumnMap", "iter_records", "read_transcripts"]

_log = logging.getLogger("qualaudit.io")

FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "parquet", "convokit")
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}
_CHUNK_ROWS = 10_000

# Long-table columns per field, in priority order, matched case-insensitively. A bare `id` is
# only the last resort for the conversation id: in many exports it is the message id.
_ID_COLUMNS = ("conversation_id", "ticket_id", "dialogue_id", "dialog_id", "chat_id",
               "session_id", "thread_id", "transcript_id", "case_id", "id")
_COLUMN_CANDIDATES: dict[str, tuple[str, ...]] = {
    "id": _ID_COLUMNS,
    "role": ("role", "speaker", "sender", "author", "author_role", "from", "participant"),
    "text": ("text", "content", "message", "body", "utterance"),
    "order": ("order", "turn", "turn_index", "turn_id", "position", "seq", "sequence",
              "timestamp", "time", "created_at", "sent_at"),
    "agent_type": ("agent_type", "handled_by"),
}
_TIMESTAMP_COLUMNS = ("timestamp", "time", "created_at", "sent_at")
_METADATA_COLUMNS = {"channel": "channel", "language": "language", "lang": "language",
                     "team": "team", "customer_id": "customer_id", "queue": "queue"}

# One-transcript-per-object shapes (JSONL lines, dicts, rows with a messages/turns column).
# Here `id` comes first: the object is the transcript, so its own id is the transcript id.
_OBJECT_ID_KEYS = ("id", "conversation_id", "ticket_id", "dialogue_id")
_TURN_LISTS = ("messages", "turns")
_ROLE_KEYS = ("role", "speaker", "sender")
_TEXT_KEYS = ("text", "content", "utterance", "message")
_TEXT_PART_TYPES = ("text", "input_text", "output_text")

_CONVERSATION_KEYS = ("conversation_id", "root")  # a ConvoKit utterance's conversation
_TABLE_DUPLICATE_HINT = ("Rows of one conversation must be contiguous: sort the table by the "
                         "id column")
_OBJECT_DUPLICATE_HINT = "Each transcript needs its own id: rename or remove the duplicate"
_CSV_HINT = ("Quote every field that holds the separator, a quote or a line break (\"...\", with "
             "inner quotes doubled) and keep each field under {limit} characters, or export the "
             "table again; the transcript of that row is left out")


@dataclass(frozen=True)
class ColumnMap:
    """Column names of a long table (one row per turn); a None field is detected from the header.

    Example: `ColumnMap(id="ticket", text="body_plain")` for an export whose id and text
    columns have names qualaudit does not know. Matching is exact, then case-insensitive.
    """

    id: str | None = None
    role: str | None = None
    text: str | None = None
    order: str | None = None
    agent_type: str | None = None


def iter_records(
    source: Any,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | Mapping[str, Any] | None = None,
) -> Iterator[Transcript | InputError]:
    """Each transcript of `source`, validated, or an `InputError` value for each bad one.

    `source` is a path (.jsonl/.json, .csv/.tsv, .parquet/.pq, or a ConvoKit corpus directory
    or its utterances.jsonl), a pandas DataFrame or datasets.Dataset (a long table, or one
    transcript per row when it has a `messages`/`turns` column), a Transcript, a dict, or an
    iterable of Transcripts and dicts. `format` overrides the file extension; `columns` names
    long-table columns (other sources ignore it). Transcripts passed in are validated like any
    other input (roles normalised, empty turns dropped); one made by this library comes back
    equal, and keeps its `source` and `line`.

    Errors that make the whole source unreadable (missing file, unknown format, missing or
    ambiguous columns, bad role map) are raised here, before the first record. Every other
    problem is yielded as an `InputError` and reading goes on; a CSV/TSV row with the wrong
    number of fields (or that cannot be parsed) rejects the transcript it belongs to.

    `line` is the 1-based line of a JSONL or utterances.jsonl file, the 1-based data row of a
    table (the header and blank lines are not counted) or the 1-based item of an iterable. An
    id seen before in the same source is rejected, never merged: in a streamed table (CSV,
    Parquet, Dataset) the rows of one conversation must be contiguous; a DataFrame is grouped
    by id, and a ConvoKit corpus by conversation_id (its utterances may come in any order:
    within a conversation they are ordered by timestamp when every utterance has one, else
    each after the utterance it replies to, ties and the rest in file order).
    When several optional columns could serve (say `seq` and `timestamp` for the order), the
    first in priority order is used and the choice is logged at INFO on "qualaudit.io".

    Example:
        >>> for record in iter_records("chats.csv", role_map="customer=visitor"):
        ...     print(record.id if isinstance(record, Transcript) else record)
    """
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected auto or one of {', '.join(FORMATS)}",
                         field="format")
    roles = parse_role_map(role_map)
    stream = _open(source, format, columns)
    return _checked(stream, roles)


def read_transcripts(
    source: Any,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | Mapping[str, Any] | None = None,
) -> Iterator[Transcript]:
    """The valid transcripts of `source` (see `iter_records`), raising or skipping bad ones.

    With `on_error="skip"` each bad transcript is logged on the "qualaudit.io" logger by
    location and reason only, never with its text.

    Example:
        >>> transcripts = list(read_transcripts("chats.jsonl", on_error="skip"))
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    records = iter_records(source, format=format, columns=columns, role_map=role_map)
    return _valid_only(records, on_error)


def _valid_only(records: Iterator[Transcript | InputError], on_error: str) -> Iterator[Transcript]:
    for record in records:
        if isinstance(record, Transcript):
            yield record
        elif on_error == "raise":
            raise record
        else:
            _log.warning("skipped a transcript: %s", record)


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


# ---- sources ---------------------------------------------------------------------------------


def _open(source: Any, fmt: str, columns: ColumnMap | None) -> _Stream:
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), fmt, columns)
    name = f"<{type(source).__name__}>"
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(source, pandas.DataFrame):
        names = [c for c in source.columns if isinstance(c, str)]
        return _rows_stream(names, partial(_frame_rows, source), columns, name)
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        raise InputError(f"expected one split of a DatasetDict, found splits {list(source)}",
                         hint="Pass one split, e.g. dataset['train']")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return _rows_stream(source.column_names, partial(_dataset_rows, source), columns, name)
    if isinstance(source, (Transcript, Mapping)):
        source = [source]
    if isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)):
        return _Stream(_item_records(source, name), name, "item", _OBJECT_DUPLICATE_HINT)
    raise InputError(
        f"cannot read transcripts from a {type(source).__name__}; expected a file path, a pandas "
        "DataFrame, a datasets.Dataset, a Transcript, a dict or an iterable of Transcripts/dicts"
    )


def _open_path(path: Path, fmt: str, columns: ColumnMap | None) -> _Stream:
    source = str(path)
    if not path.exists():
        raise InputError("file not found", source=source,
                         hint="Check the path (a relative path starts at the current directory)")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt == "convokit":
        return _convokit_stream(path)
    if path.is_dir():
        raise InputError(f"expected a {fmt} file, found a directory", source=source)
    if fmt == "jsonl":
        _reject_json_array(path)
        return _Stream(_jsonl_records(path, source), source, "line", _OBJECT_DUPLICATE_HINT)
    if fmt in ("csv", "tsv"):
        return _csv_stream(path, "\t" if fmt == "tsv" else ",", columns)
    return _parquet_stream(path, columns)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "utterances.jsonl").is_file():
            return "convokit"
        raise InputError("directory without utterances.jsonl; expected a transcript file or a "
                         "ConvoKit corpus directory", source=str(path))
    if path.name == "utterances.jsonl":
        return "convokit"
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the format from the extension {path.suffix!r}; expected one of "
            + ", ".join(_SUFFIX_FORMATS),
            source=str(path), hint=f"Pass --format (format=) with one of {', '.join(FORMATS)}",
        )
    return fmt


def _item_records(items: Iterable[Any], source: str) -> Iterator[_Raw | InputError]:
    for number, item in enumerate(items, 1):
        if isinstance(item, Transcript):
            yield _transcript_record(item, number, source)
        else:
            yield _object_record(item, number, source)


def _transcript_record(transcript: Transcript, number: int, source: str) -> _Raw | InputError:
    """A Transcript passed in, as raw parts for make_transcript to validate again.

    Turn indices are kept when they are distinct; Turns built without one all have index 0,
    and then their positions are used instead.
    """
    for i, turn in enumerate(transcript.turns):
        if not isinstance(turn, Turn):
            return InputError(f"expected a Turn, found {type(turn).__name__}", source=source,
                              line=number, transcript_id=normalize_id(transcript.id),
                              field=f"turns[{i}]", turn=i)
    indices = [turn.index for turn in transcript.turns]
    distinct = len(set(indices)) == len(indices)
    turns = [{"role": turn.role, "text": turn.text, "timestamp": turn.timestamp,
              "agent_type": turn.agent_type, "speaker": turn.speaker,
              **({"index": turn.index} if distinct else {})} for turn in transcript.turns]
    origin = (transcript.source, transcript.line) if transcript.source is not None else None
    return _Raw(id=transcript.id, line=number, turns=turns, id_field="id",
                agent_type=transcript.agent_type, metadata=transcript.metadata,
                n_input_turns=transcript.n_input_turns, origin=origin,
                locate=lambda i, part: (number, f"turns[{i}].{part}"))


# ---- one transcript per object: JSONL lines, dicts, rows with a messages/turns column ----------


def _reject_json_array(path: Path) -> None:
    """A whole-file JSON array would fail on every line; say what it is instead."""
    with path.open("rb") as handle:
        start = handle.read(1024).removeprefix(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"["):
        raise InputError(
            "expected JSON Lines (one transcript object per line), found a JSON array",
            source=str(path), hint=f"Convert it with: jq -c '.[]' {path.name} > transcripts.jsonl",
        )


def _json_line(data: bytes, number: int, source: str,
               id_keys: tuple[str, ...]) -> tuple[int, Any] | InputError | None:
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


def _guess_id(data: bytes, id_keys: tuple[str, ...]) -> str | None:
    """The id of a line that is not valid UTF-8, when it can be read anyway (for the error)."""
    try:
        obj = json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        return None
    key = next((k for k in id_keys if k in obj), None) if isinstance(obj, dict) else None
    return normalize_id(obj[key]) if key is not None else None


def _jsonl_records(path: Path, source: str) -> Iterator[_Raw | InputError]:
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            item = _json_line(data, number, source, _OBJECT_ID_KEYS)
            if isinstance(item, InputError):
                yield item
            elif item is not None:
                yield _object_record(item[1], number, source)


def _object_record(obj: Any, line: int, source: str) -> _Raw | InputError:
    """A transcript object (`{"id", "messages"}` or `{"id", "turns"}`) as raw parts."""
    where = {"source": source, "line": line}
    if not isinstance(obj, Mapping):
        return InputError(
            f"expected a transcript object with an id and messages or turns, found {_kind(obj)}",
            hint='Each transcript looks like {"id": "c1", "messages": [{"role": ..., '
                 '"content": ...}]}', **where,
        )
    id_key = next((k for k in _OBJECT_ID_KEYS if k in obj), None)
    if id_key is None:
        return InputError(f"no transcript id; expected one of the keys {', '.join(_OBJECT_ID_KEYS)}, "
                          f"found keys {sorted(map(str, obj))}", field="id", **where)
    tid = obj[id_key]
    if isinstance(tid, bool) or not (tid is None or isinstance(tid, (str, numbers.Real))):
        return InputError(f"expected the id to be a string or a number, found {_kind(tid)}",
                          field=id_key, **where)
    try:
        return _parse_object(obj, id_key, line)
    except InputError as exc:
        return exc.located(transcript_id=normalize_id(tid), **where)


def _parse_object(obj: Mapping[str, Any], id_key: str, line: int) -> _Raw:
    present = [k for k in _TURN_LISTS if k in obj]
    if len(present) != 1:
        found = "both" if present else f"neither (keys found: {sorted(map(str, obj))})"
        raise InputError(f"expected a 'messages' or a 'turns' list, found {found}",
                         field="messages")
    list_key = present[0]
    raw_turns = _as_list(obj[list_key])
    if raw_turns is None:
        raise InputError(f"expected a list of turns, found {_kind(obj[list_key])}", field=list_key)
    turns = []
    for i, turn in enumerate(raw_turns):
        if not isinstance(turn, Mapping):
            raise InputError(f"expected a turn object with a role and a text, found {_kind(turn)}",
                             field=f"{list_key}[{i}]")
        text_key = _first_key(turn, _TEXT_KEYS)
        text = turn.get(text_key) if text_key else None
        parts = _as_list(text)
        if parts is not None:
            text = _joined_parts(parts, f"{list_key}[{i}].{text_key}")
        role_key = _first_key(turn, _ROLE_KEYS)
        turns.append({"role": turn.get(role_key) if role_key else None, "text": text,
                      "timestamp": turn.get("timestamp"), "agent_type": turn.get("agent_type")})
    reserved = {id_key, list_key, "agent_type", "metadata"}
    metadata = {k: v for k, v in obj.items() if k not in reserved and _is_scalar(v)}
    extra = obj.get("metadata")
    if is_missing(extra):
        extra = {}
    if not isinstance(extra, Mapping):
        raise InputError(f"expected metadata to be an object, found {_kind(extra)}",
                         field="metadata")
    metadata.update(extra)  # the explicit metadata object wins over top-level fields

    def locate(i: int, part: str) -> tuple[int, str]:
        keys = {"role": _first_key(raw_turns[i], _ROLE_KEYS) or "role",
                "text": _first_key(raw_turns[i], _TEXT_KEYS) or "text"}
        return line, f"{list_key}[{i}].{keys.get(part, part)}"

    return _Raw(id=obj[id_key], line=line, turns=turns, locate=locate, id_field=id_key,
                agent_type=obj.get("agent_type"), metadata=metadata)


def _joined_parts(parts: list[Any], path: str) -> str:
    """OpenAI content parts -> one text: text parts joined by newlines, other parts ignored."""
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise InputError(f'expected a content part like {{"type": "text", "text": ...}}, '
                             f"found {_kind(part)}", field=f"{path}[{j}]")
        if part.get("type", "text") not in _TEXT_PART_TYPES:
            continue
        if not isinstance(part.get("text"), str):
            raise InputError(f"expected the text of a text part, found {_kind(part.get('text'))}",
                             field=f"{path}[{j}].text")
        texts.append(part["text"])
    return "\n".join(texts)


# ---- long tables: CSV/TSV, Parquet, DataFrame, Dataset --------------------------------------


@dataclass(frozen=True)
class _Columns:
    """The header names a long table's transcripts are read from."""

    id: str
    role: str
    text: str
    order: str | None
    agent_type: str | None
    timestamp: str | None
    metadata: Mapping[str, str]  # metadata key -> column

    @property
    def used(self) -> list[str]:
        names = (self.id, self.role, self.text, self.order, self.agent_type, self.timestamp,
                 *self.metadata.values())
        return list(dict.fromkeys(n for n in names if n is not None))

    def of(self, part: str) -> str:
        """The column of a turn part ("role", "text", "timestamp" or "agent_type")."""
        columns = {"role": self.role, "text": self.text, "timestamp": self.timestamp,
                   "agent_type": self.agent_type}
        return columns.get(part) or part


def _resolve_columns(found: list[str], columns: ColumnMap | None, source: str) -> _Columns:
    """Pick each field's column: as mapped, else the one candidate present (see _COLUMN_CANDIDATES)."""
    columns = columns or ColumnMap()
    by_lower: dict[str, list[str]] = {}
    for name in found:
        by_lower.setdefault(name.lower(), []).append(name)

    def present(candidates: Iterable[str]) -> list[str]:
        return [name for c in candidates for name in by_lower.get(c, [])]

    def pick(key: str, required: bool) -> str | None:
        flag = f"--{key.replace('_', '-')}-column NAME (ColumnMap({key}=NAME))"
        explicit = getattr(columns, key)
        if explicit is not None:
            folded = by_lower.get(explicit.lower(), [])
            if explicit in found or len(folded) == 1:
                return explicit if explicit in found else folded[0]
            raise InputError(f"column {explicit!r} (ColumnMap.{key}) not found; columns found: "
                             f"{found}", source=source, hint=f"Pass {flag} with one of these")
        candidates = _COLUMN_CANDIDATES[key]
        if key == "id":  # the bare `id` only when no other id column exists
            hits = present(candidates[:-1]) or present(candidates[-1:])
        else:
            hits = present(candidates)
        if len(hits) > 1 and not required:
            _log.info("%s: using %r as the %s column; also found %s (pass %s to choose)",
                      source, hits[0], key, hits[1:], flag)
        if len(hits) == 1 or (hits and not required):
            return hits[0]
        if hits:
            raise InputError(f"ambiguous {key} column, columns found: {hits}", source=source,
                             hint=f"Pass {flag} to choose one")
        if not required:
            return None
        raise InputError(f"no {key} column; expected one of {list(candidates)} (any case), "
                         f"columns found: {found}", source=source, hint=f"Pass {flag}")

    id_, role, text = pick("id", True), pick("role", True), pick("text", True)
    order, agent_type = pick("order", False), pick("agent_type", False)
    is_time = order is not None and ("time" in order.lower() or "_at" in order.lower())
    timestamps = present(_TIMESTAMP_COLUMNS)
    timestamp = order if is_time else (timestamps[0] if timestamps else None)
    metadata: dict[str, str] = {}
    for column, key in _METADATA_COLUMNS.items():
        if by_lower.get(column) and key not in metadata:
            metadata[key] = by_lower[column][0]
    return _Columns(id_, role, text, order, agent_type, timestamp, metadata)  # type: ignore[arg-type]


_Row = tuple[int, Mapping[str, Any]]  # (data row number, {column: value})
_RowSource = Callable[[_Columns | None], Iterable[_Row]]


def _rows_stream(names: list[str], rows: _RowSource, columns: ColumnMap | None,
                 source: str) -> _Stream:
    """A row-wise source: one transcript per row with a messages/turns column, else a long table."""
    if any(k in names for k in _TURN_LISTS):
        records = (_object_record(row, number, source) for number, row in rows(None))
        return _Stream(records, source, "row", _OBJECT_DUPLICATE_HINT)
    cols = _resolve_columns(names, columns, source)
    return _Stream(_table_records(rows(cols), cols), source, "row", _TABLE_DUPLICATE_HINT)


def _table_records(rows: Iterable[_Row | InputError], cols: _Columns) -> Iterator[_Raw | InputError]:
    """One record per run of rows with the same id (a later run of that id is a duplicate).

    A malformed row (an InputError) with a known id joins the run of that id and rejects the
    whole transcript; one whose id cannot be read stands alone.
    """

    def id_of(item: _Row | InputError) -> Any:
        if isinstance(item, InputError):
            return item if item.transcript_id is None else item.transcript_id
        return normalize_id(item[1][cols.id])

    for _, group in itertools.groupby(rows, key=id_of):
        run = list(group)
        malformed = next((item for item in run if isinstance(item, InputError)), None)
        if malformed is not None:
            yield malformed
            continue
        line, first = run[0]  # type: ignore[misc]
        if cols.order is not None:
            run = _in_order(run, cols.order)  # type: ignore[arg-type]
        turns = [{"role": row[cols.role], "text": row[cols.text],
                  "timestamp": _value(row, cols.timestamp),
                  "agent_type": _value(row, cols.agent_type)} for _, row in run]
        metadata = {key: value for key, column in cols.metadata.items()
                    if _is_scalar(value := first[column])}
        yield _Raw(id=first[cols.id], line=line, turns=turns, id_field=cols.id, metadata=metadata,
                   locate=lambda i, part, run=run: (run[i][0], cols.of(part)))


def _csv_stream(path: Path, sep: str, columns: ColumnMap | None) -> _Stream:
    """A CSV/TSV long table. Invalid UTF-8 bytes are kept as lone surrogates (surrogateescape),
    so make_transcript rejects exactly the transcript whose row holds them."""
    source = str(path)
    with _open_csv(path) as handle:
        header = _csv_header(csv.reader(handle, delimiter=sep, strict=True), source)
    cols = _resolve_columns(header, columns, source)
    rows = _csv_rows(path, sep, cols, source)
    return _Stream(_table_records(rows, cols), source, "row", _TABLE_DUPLICATE_HINT)


def _open_csv(path: Path) -> Any:
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_header(reader: Any, source: str) -> list[str]:
    """The first non-blank row: the column names."""
    try:
        header = next((row for row in reader if row), None)
    except csv.Error as exc:
        raise InputError(f"cannot read the header: {exc}", source=source,
                         hint="Fix the header line, or export the table again") from None
    if header is None:
        raise InputError("empty file; expected a header row of column names", source=source)
    return header


class _RecordLines:
    """The lines fed to a csv.reader, keeping the first line of the record being read, so
    that the id of a record the reader cannot parse can still be read from it."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.first: str | None = None

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if self.first is None:
            self.first = line
        return line


def _csv_rows(path: Path, sep: str, cols: _Columns, source: str) -> Iterator[_Row | InputError]:
    """Each data row as {column: cell} over the columns used, numbered from 1 (blank lines
    are not rows). A row with another number of fields than the header, or with broken
    quoting, is an InputError naming its data row, its physical lines and its id."""
    with _open_csv(path) as handle:
        lines = _RecordLines(handle)
        reader = csv.reader(lines, delimiter=sep, strict=True)
        header = _csv_header(reader, source)
        names = cols.used
        positions = [header.index(name) for name in names]
        id_position, width = header.index(cols.id), len(header)
        number, previous_line, lines.first = 0, reader.line_num, None
        while True:
            try:
                for cells in reader:
                    if len(cells) == width:
                        number += 1
                        yield number, {name: cells[p] for name, p in zip(names, positions)}
                    elif cells:
                        number += 1
                        yield _malformed_row(
                            f"expected {width} fields as in the header, found {len(cells)}",
                            number, (previous_line + 1, reader.line_num), cells, id_position,
                            source)
                    previous_line, lines.first = reader.line_num, None
                return
            except csv.Error as exc:
                number += 1
                yield _malformed_row(
                    f"cannot parse it: {exc}", number, (previous_line + 1, reader.line_num),
                    _first_cells(lines.first, sep), id_position, source)
                previous_line, lines.first = reader.line_num, None


def _first_cells(line: str | None, sep: str) -> list[str]:
    """The cells at the start of a record the reader could not parse, read from its first
    line leniently (cut below the field size limit, which is what the reader may have hit)."""
    cut = (line or "")[: csv.field_size_limit() // 2]
    return next(csv.reader([cut], delimiter=sep), [])


def _malformed_row(problem: str, number: int, lines: tuple[int, int], cells: list[str],
                   id_position: int, source: str) -> InputError:
    first, last = lines
    where = f"line {first}" if first == last else f"lines {first}-{last}"
    tid = normalize_id(cells[id_position]) if id_position < len(cells) else None
    unknown = "" if tid is not None else "; its id cannot be read, so check the transcripts next to it"
    return InputError(f"malformed data row {number} (physical {where} of the file): "
                      f"{problem}{unknown}", source=source, line=number, transcript_id=tid,
                      hint=_CSV_HINT.format(limit=csv.field_size_limit()))


def _parquet_stream(path: Path, columns: ColumnMap | None) -> _Stream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read as Parquet: {exc}", source=str(path),
                         hint="Check that the file is Parquet, or pass --format") from None
    return _rows_stream(names, partial(_parquet_rows, path), columns, str(path))


def _parquet_rows(path: Path, cols: _Columns | None) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    number = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=_CHUNK_ROWS,
                                          columns=cols.used if cols else None):
            for row in batch.to_pylist():
                number += 1
                yield number, row


def _frame_rows(frame: Any, cols: _Columns | None) -> Iterator[_Row]:
    """Rows of a DataFrame; a long table's rows grouped by id in order of first appearance
    (the frame is in memory already, so its rows need not be contiguous)."""
    names = cols.used if cols else list(frame.columns)
    values = {name: frame[name].tolist() for name in names}
    positions: Iterable[int] = range(len(frame))
    if cols is not None:
        keys = [normalize_id(v) for v in values[cols.id]]
        first: dict[str | None, int] = {}
        for key in keys:
            first.setdefault(key, len(first))
        positions = sorted(positions, key=lambda p: first[keys[p]])
    for p in positions:
        yield p + 1, {name: values[name][p] for name in names}


def _dataset_rows(dataset: Any, cols: _Columns | None) -> Iterator[_Row]:
    """Rows of a datasets.Dataset, a batch at a time (never converted whole)."""
    if cols is None:
        yield from enumerate(dataset, 1)
        return
    names, number = cols.used, 0
    for batch in dataset.select_columns(names).iter(batch_size=_CHUNK_ROWS):
        for values in zip(*(batch[name] for name in names), strict=True):
            number += 1
            yield number, dict(zip(names, values, strict=True))


def _in_order(run: list[_Row], column: str) -> list[_Row]:
    """One conversation's rows sorted (stably) by `column`; rows without a value go last."""
    keys = _sort_keys([row.get(column) for _, row in run])
    return [run[i] for i in sorted(range(len(run)), key=keys.__getitem__)]


def _sort_keys(values: list[Any]) -> list[tuple[bool, Any]]:
    """Numbers if every value is one, else instants if every value is a time, else strings."""
    present = [v for v in values if not is_missing(v)]
    parsed = iter(_as_numbers(present) or _as_instants(present) or [str(v) for v in present])
    return [(True, 0) if is_missing(v) else (False, next(parsed)) for v in values]


def _as_numbers(values: list[Any]) -> list[float] | None:
    try:
        result = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return None if any(n != n for n in result) else result


def _as_instants(values: list[Any]) -> list[float] | None:
    """Seconds since the epoch; a time without a zone counts as UTC so that all compare."""
    try:
        times = [v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in values]
    except (TypeError, ValueError):
        import pandas as pd

        try:
            times = list(pd.to_datetime(values, utc=True, format="mixed"))
        except (TypeError, ValueError, OverflowError):
            return None
    try:
        return [(t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp() for t in times]
    except (TypeError, ValueError):  # NaT
        return None


# ---- ConvoKit corpora ------------------------------------------------------------------------


def _convokit_stream(path: Path) -> _Stream:
    directory = path if path.is_dir() else path.parent
    utterances = directory / "utterances.jsonl" if path.is_dir() else path
    if not utterances.is_file():
        raise InputError("ConvoKit corpus without utterances.jsonl", source=str(path),
                         hint="Pass the corpus directory or its utterances.jsonl")
    source = str(utterances)
    records = _convokit_records(utterances, _speaker_roles(directory / "speakers.json"), source)
    return _Stream(records, source, "line", None)


def _speaker_roles(path: Path) -> dict[str, Any]:
    """Speaker id -> role (meta "role" or "type") from speakers.json, a small file read whole."""
    if not path.is_file():
        return {}
    try:
        speakers = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read speakers.json: {exc}", source=str(path),
                         hint="Fix or remove speakers.json (roles then come from utterance "
                              "meta or speaker ids)") from None
    if not isinstance(speakers, dict):
        raise InputError(f"expected an object of speakers by id, found {_kind(speakers)}",
                         source=str(path))
    roles = {}
    for speaker_id, speaker in speakers.items():
        meta = speaker.get("meta") if isinstance(speaker, dict) else None
        role = meta.get("role", meta.get("type")) if isinstance(meta, dict) else None
        if role is not None:
            roles[speaker_id] = role
    return roles


def _convokit_records(path: Path, speaker_roles: Mapping[str, Any],
                      source: str) -> Iterator[_Raw | InputError]:
    """One record per conversation, in order of first appearance; its utterances may be
    anywhere in the file. A first pass keeps only line numbers and byte offsets per
    conversation (never text), a second pass reads each conversation's lines back.

    A line that is not valid JSON, or names no conversation, is an error of its own; a line
    of a known conversation that cannot be read (invalid UTF-8) rejects that conversation.
    """
    conversations = _utterance_positions(path, source)
    with path.open("rb") as handle:
        for key, positions in conversations.items():
            utterances, error = [], None
            for line, offset in zip(positions[::2], positions[1::2]):
                handle.seek(offset)
                item = _json_line(handle.readline(), line, source, _CONVERSATION_KEYS)
                if isinstance(item, InputError):
                    error = error or item
                elif item is not None:
                    utterances.append(item)
            if isinstance(key, int):  # the line number of a line without a conversation
                yield error or InputError("expected an utterance object with a conversation_id",
                                          source=source, line=key, field="conversation_id")
            elif error is not None:
                yield error.located(transcript_id=key)
            else:
                yield _conversation_record(key, utterances, speaker_roles)


def _utterance_positions(path: Path, source: str) -> dict[str | int, array]:
    """Conversation id -> [line, byte offset, line, offset, ...] of its utterances, in order of
    first appearance; a line that names no conversation is keyed by its own line number."""
    positions: dict[str | int, array] = {}
    offset = 0
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            item = _json_line(data, number, source, _CONVERSATION_KEYS)
            if item is not None:
                key = _conversation_of(item)
                positions.setdefault(number if key is None else key, array("q")).extend(
                    (number, offset))
            offset += len(data)
    return positions


def _conversation_of(item: tuple[int, Any] | InputError) -> str | None:
    if isinstance(item, InputError):
        return item.transcript_id
    obj = item[1]
    return normalize_id(_first_value(obj, _CONVERSATION_KEYS)) if isinstance(obj, dict) else None


def _conversation_record(key: str, utterances: list[tuple[int, Any]],
                         speaker_roles: Mapping[str, Any]) -> _Raw:
    run = _conversation_order(utterances)
    turns, role_fields = [], []
    for _, obj in run:
        meta = obj["meta"] if isinstance(obj.get("meta"), dict) else {}
        speaker = obj.get("speaker", obj.get("user"))
        if "role" in meta:
            role, role_field = meta["role"], "meta.role"
        elif isinstance(speaker, str) and speaker in speaker_roles:
            role, role_field = speaker_roles[speaker], "speaker"
        else:
            role, role_field = speaker, "speaker"
        role_fields.append(role_field)
        turns.append({"role": role, "text": obj.get("text"), "timestamp": obj.get("timestamp"),
                      "agent_type": meta.get("agent_type")})

    def locate(i: int, part: str) -> tuple[int, str]:
        return run[i][0], {"role": role_fields[i], "agent_type": "meta.agent_type"}.get(part, part)

    return _Raw(id=key, line=utterances[0][0], turns=turns, locate=locate,
                id_field="conversation_id")


def _conversation_order(utterances: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """By timestamp when every utterance has one (ties in file order), else in reply order."""
    stamps = [obj.get("timestamp") for _, obj in utterances]
    if any(is_missing(stamp) for stamp in stamps):
        return _reply_order(utterances)
    keys = _sort_keys(stamps)
    return [utterances[i] for i in sorted(range(len(utterances)), key=keys.__getitem__)]


def _reply_order(utterances: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Each utterance after the one it replies to (`reply_to`), and otherwise in file order:
    of the utterances whose parent is placed, the earliest in the file goes next. Utterances
    caught in a reply cycle go last, in file order."""
    first_of: dict[str | None, int] = {}
    for i, (_, obj) in enumerate(utterances):
        first_of.setdefault(normalize_id(obj.get("id")), i)
    first_of.pop(None, None)
    replies: dict[int, list[int]] = {}
    ready = []
    for i, (_, obj) in enumerate(utterances):
        parent = first_of.get(normalize_id(obj.get("reply_to")))
        if parent is None or parent == i:
            ready.append(i)
        else:
            replies.setdefault(parent, []).append(i)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for reply in replies.get(i, ()):
            heapq.heappush(ready, reply)
    placed = set(order)
    order += [i for i in range(len(utterances)) if i not in placed]
    return [utterances[i] for i in order]


# ---- small value helpers ---------------------------------------------------------------------


def _value(row: Mapping[str, Any], column: str | None) -> Any:
    return None if column is None or is_missing(row[column]) else row[column]


def _is_scalar(value: Any) -> bool:
    """Whether a top-level field or cell goes to metadata: present and not nested (a list, an
    object or an array); make_transcript turns it into plain JSON."""
    return not (is_missing(value) or isinstance(value, (Mapping, list, tuple))
                or getattr(value, "ndim", 0))


def _first_value(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    key = _first_key(mapping, keys)
    return None if key is None else mapping[key]


def _as_list(value: Any) -> list[Any] | None:
    """A list of a JSON array, or of the numpy array pandas makes of a Parquet list column."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", 0) == 1:
        return value.tolist()
    return None


def _first_key(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in mapping), None)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for "found ..." in messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)

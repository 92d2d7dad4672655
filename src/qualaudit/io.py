"""Transcript readers: JSONL, CSV/TSV, Parquet, ConvoKit, pandas and datasets -> `Transcript`s.

Every reader streams (a line, a chunk or a batch at a time) and only reshapes raw records
into what `normalize.make_transcript` validates. A bad transcript becomes an `InputError`
value, located by file, line or row, id and field, so one bad record never stops a run.
"""

from __future__ import annotations

import itertools
import json
import logging
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import InputError
from .normalize import make_transcript, parse_role_map
from .schema import Transcript

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

_BAD_UTF8 = "invalid UTF-8 (or a lone surrogate)"
_UTF8_HINT = "Re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT"
_TABLE_DUPLICATE_HINT = ("Rows of one conversation must be contiguous: sort the table by the "
                         "id column")
_OBJECT_DUPLICATE_HINT = "Each transcript needs its own id: rename or remove the duplicate"
_TURN_FIELD = re.compile(r"turns\[(\d+)\](?:\.(\w+))?")


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
    long-table columns (other sources ignore it). Transcripts passed in are yielded as they are.

    Errors that make the whole source unreadable (missing file, unknown format, missing or
    ambiguous columns, bad role map) are raised here, before the first record; a CSV line that
    breaks the CSV syntax itself (too many fields, broken quoting) stops the stream with a
    raise. Every other problem is yielded as an `InputError` and reading goes on.

    `line` is the 1-based line of a JSONL or utterances.jsonl file, the 1-based data row of a
    table (the header is not counted) or the 1-based item of an iterable. An id seen before in
    the same source is rejected, never merged: in a streamed table (CSV, Parquet, Dataset,
    ConvoKit) the rows of one conversation must be contiguous; a DataFrame is grouped by id.

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
    "timestamp" or "agent_type" of turn i, so that errors name the user's own column or key.
    """

    id: Any
    line: int
    turns: list[dict[str, Any]]
    locate: Callable[[int, str], tuple[int, str]]
    id_field: str
    agent_type: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


class _Stream(NamedTuple):
    records: Iterable[_Raw | InputError | Transcript]
    source: str
    unit: str  # what `line` counts here: "line", "row" or "item"
    duplicate_hint: str


def _checked(stream: _Stream, role_map: Mapping[str, str]) -> Iterator[Transcript | InputError]:
    """Validate each record, rejecting any later occurrence of an id (never merged)."""
    seen: dict[str, int | None] = {}
    # A Transcript passed in is only ever an item of an iterable, so its position is its line.
    for position, record in enumerate(stream.records, 1):
        if isinstance(record, InputError):
            if record.transcript_id is not None:
                seen.setdefault(record.transcript_id, record.line)
            yield record
            continue
        if isinstance(record, Transcript):
            if not record.scored_turns:
                yield InputError("no customer or agent turn to score", source=stream.source,
                                 line=position, transcript_id=record.id, field="turns")
                continue
            key, line, id_field = record.id, position, "id"
        else:
            key, line, id_field = _id_key(record.id), record.line, record.id_field
        if key is not None and key in seen:
            yield InputError(
                f"duplicate id {key!r}, first seen at {stream.unit} {seen[key]}",
                source=stream.source, line=line, transcript_id=key, field=id_field,
                hint=stream.duplicate_hint,
            )
            continue
        if key is not None:
            seen[key] = line
        yield record if isinstance(record, Transcript) else _build(record, role_map, stream.source)


def _build(raw: _Raw, role_map: Mapping[str, str], source: str) -> Transcript | InputError:
    where = {"source": source, "line": raw.line}
    if _has_surrogate(raw.id):
        return InputError(_BAD_UTF8, field=raw.id_field,
                          hint=_UTF8_HINT, **where)
    tid = _id_key(raw.id)
    for key, value in raw.metadata.items():
        if _has_surrogate(value):
            return InputError(_BAD_UTF8, field=f"metadata.{key}", transcript_id=tid,
                              hint=_UTF8_HINT, **where)
    for i, turn in enumerate(raw.turns):
        if _has_surrogate(turn.get("timestamp")):
            line, name = raw.locate(i, "timestamp")
            return InputError(_BAD_UTF8, source=source, line=line, transcript_id=tid,
                              field=name, hint=_UTF8_HINT)
    try:
        return make_transcript(raw.id, raw.turns, agent_type=raw.agent_type,
                               metadata=raw.metadata, role_map=role_map, **where)
    except InputError as exc:
        return _relocated(exc, raw)


def _relocated(exc: InputError, raw: _Raw) -> InputError:
    """The error with make_transcript's `turns[i].part` field turned into the input's own names."""
    match = _TURN_FIELD.fullmatch(exc.field or "")
    if match is None and exc.field != "id":
        return exc
    line, name = exc.line, raw.id_field
    if match is not None:
        i = int(match[1])
        # make_transcript reports a bad text encoding and a bad agent type as `turns[i]` alone.
        part = match[2] or ("text" if _has_surrogate(raw.turns[i].get("text")) else "agent_type")
        line, name = raw.locate(i, part)
    return InputError(exc.reason, hint=exc.hint, source=exc.source, line=line,
                      transcript_id=exc.transcript_id, field=name)


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


def _item_records(items: Iterable[Any], source: str) -> Iterator[_Raw | InputError | Transcript]:
    for number, item in enumerate(items, 1):
        yield item if isinstance(item, Transcript) else _object_record(item, number, source)


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


def _json_lines(path: Path, source: str) -> Iterator[tuple[int, Any] | InputError]:
    """(line number, parsed value) of each non-blank line, or an InputError for a bad line."""
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield InputError(
                    f"invalid UTF-8 at byte {exc.start + 1} of the line "
                    f"(0x{data[exc.start]:02x})",
                    source=source, line=number, transcript_id=_guess_id(data), hint=_UTF8_HINT,
                )
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield InputError(f"not valid JSON: {exc.msg} at column {exc.colno}",
                                 source=source, line=number,
                                 hint="Each line must be one complete JSON object (JSON Lines)")


def _guess_id(data: bytes) -> str | None:
    """The id of a line that is not valid UTF-8, when it can be read anyway (for the error)."""
    try:
        obj = json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        return None
    key = next((k for k in _OBJECT_ID_KEYS if k in obj), None) if isinstance(obj, dict) else None
    return _id_key(obj[key]) if key is not None else None


def _jsonl_records(path: Path, source: str) -> Iterator[_Raw | InputError]:
    for item in _json_lines(path, source):
        yield item if isinstance(item, InputError) else _object_record(item[1], item[0], source)


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
        return exc.located(transcript_id=_id_key(tid), **where)


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
    metadata = {k: v for k, v in ((k, _plain(v)) for k, v in obj.items() if k not in reserved)
                if v is not None}
    extra = obj.get("metadata")
    if extra is not None and not isinstance(extra, Mapping):
        raise InputError(f"expected metadata to be an object, found {_kind(extra)}",
                         field="metadata")
    metadata.update(extra or {})  # the explicit metadata object wins over top-level fields

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
        return {"role": self.role, "text": self.text, "timestamp": self.timestamp,
                "agent_type": self.agent_type}[part] or part


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


_RowSource = Callable[[_Columns | None], Iterable[tuple[int, Mapping[str, Any]]]]


def _rows_stream(names: list[str], rows: _RowSource, columns: ColumnMap | None,
                 source: str) -> _Stream:
    """A row-wise source: one transcript per row with a messages/turns column, else a long table."""
    if any(k in names for k in _TURN_LISTS):
        records = (_object_record(row, number, source) for number, row in rows(None))
        return _Stream(records, source, "row", _OBJECT_DUPLICATE_HINT)
    cols = _resolve_columns(names, columns, source)
    return _Stream(_table_records(rows(cols), cols), source, "row", _TABLE_DUPLICATE_HINT)


def _table_records(rows: Iterable[tuple[int, Mapping[str, Any]]], cols: _Columns) -> Iterator[_Raw]:
    """One record per run of rows with the same id (a later run of that id is a duplicate)."""
    for _, group in itertools.groupby(rows, key=lambda row: _id_key(row[1][cols.id])):
        run = list(group)
        line, first = run[0]
        if cols.order is not None:
            run = _in_order(run, cols.order)
        turns = [{"role": row[cols.role], "text": row[cols.text],
                  "timestamp": _value(row, cols.timestamp),
                  "agent_type": _value(row, cols.agent_type)} for _, row in run]
        metadata = {key: value for key, column in cols.metadata.items()
                    if (value := _plain(first[column])) is not None}
        yield _Raw(id=first[cols.id], line=line, turns=turns, id_field=cols.id, metadata=metadata,
                   locate=lambda i, part, run=run: (run[i][0], cols.of(part)))


def _csv_stream(path: Path, sep: str, columns: ColumnMap | None) -> _Stream:
    """A CSV/TSV long table. Invalid UTF-8 bytes are kept as lone surrogates (surrogateescape),
    so make_transcript rejects exactly the transcript whose row holds them."""
    import pandas as pd

    source = str(path)
    options = {"sep": sep, "dtype": object, "na_filter": False, "encoding": "utf-8-sig",
               "encoding_errors": "surrogateescape"}
    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except pd.errors.EmptyDataError:
        raise InputError("empty file; expected a header row of column names",
                         source=source) from None
    except pd.errors.ParserError as exc:
        raise InputError(f"cannot read the header: {exc}", source=source) from None
    cols = _resolve_columns(header, columns, source)
    rows = _csv_rows(path, cols.used, options, source)
    return _Stream(_table_records(rows, cols), source, "row", _TABLE_DUPLICATE_HINT)


def _csv_rows(path: Path, names: list[str], options: dict[str, Any],
              source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import pandas as pd

    number = 0
    try:
        # No usecols: with it pandas silently drops the extra fields of a row with too many.
        with pd.read_csv(path, chunksize=_CHUNK_ROWS, **options) as reader:
            for chunk in reader:
                for values in zip(*(chunk[name].tolist() for name in names), strict=True):
                    number += 1
                    yield number, dict(zip(names, values, strict=True))
    except pd.errors.ParserError as exc:
        raise InputError(
            f"malformed CSV after data row {number}: {exc}", source=source,
            hint="Fix the quoting or the number of fields on that line (its number counts the "
                 "header line), or export the table again",
        ) from None


def _parquet_stream(path: Path, columns: ColumnMap | None) -> _Stream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read as Parquet: {exc}", source=str(path),
                         hint="Check that the file is Parquet, or pass --format") from None
    return _rows_stream(names, partial(_parquet_rows, path), columns, str(path))


def _parquet_rows(path: Path, cols: _Columns | None) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    number = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=_CHUNK_ROWS,
                                          columns=cols.used if cols else None):
            for row in batch.to_pylist():
                number += 1
                yield number, row


def _frame_rows(frame: Any, cols: _Columns | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a DataFrame; a long table's rows grouped by id in order of first appearance
    (the frame is in memory already, so its rows need not be contiguous)."""
    names = cols.used if cols else list(frame.columns)
    values = {name: frame[name].tolist() for name in names}
    positions: Iterable[int] = range(len(frame))
    if cols is not None:
        keys = [_id_key(v) for v in values[cols.id]]
        first: dict[str | None, int] = {}
        for key in keys:
            first.setdefault(key, len(first))
        positions = sorted(positions, key=lambda p: first[keys[p]])
    for p in positions:
        yield p + 1, {name: values[name][p] for name in names}


def _dataset_rows(dataset: Any, cols: _Columns | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a datasets.Dataset, a batch at a time (never converted whole)."""
    if cols is None:
        yield from enumerate(dataset, 1)
        return
    names, number = cols.used, 0
    for batch in dataset.select_columns(names).iter(batch_size=_CHUNK_ROWS):
        for values in zip(*(batch[name] for name in names), strict=True):
            number += 1
            yield number, dict(zip(names, values, strict=True))


def _in_order(run: list[tuple[int, Mapping[str, Any]]], column: str) -> list[tuple[int, Any]]:
    """One conversation's rows sorted (stably) by `column`; rows without a value go last."""
    keys = _sort_keys([row.get(column) for _, row in run])
    return [run[i] for i in sorted(range(len(run)), key=keys.__getitem__)]


def _sort_keys(values: list[Any]) -> list[tuple[bool, Any]]:
    """Numbers if every value is one, else instants if every value is a time, else strings."""
    present = [v for v in values if not _missing(v)]
    parsed = iter(_as_numbers(present) or _as_instants(present) or [str(v) for v in present])
    return [(True, 0) if _missing(v) else (False, next(parsed)) for v in values]


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
    return _Stream(records, source, "line", "Utterances of one conversation must be contiguous: "
                   "sort utterances.jsonl by conversation_id")


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
    """One record per run of utterances with the same conversation_id, ordered by timestamp."""

    def keyed(item: tuple[int, Any] | InputError) -> tuple[Any, Any]:
        # A bad line is keyed by its own error, so it forms a run of its own.
        if isinstance(item, InputError):
            return item, item
        line, obj = item
        conversation = obj.get("conversation_id", obj.get("root")) if isinstance(obj, dict) else None
        if _id_key(conversation) is None:
            error = InputError("expected an utterance object with a conversation_id",
                               source=source, line=line, field="conversation_id")
            return error, error
        return _id_key(conversation), item

    for key, group in itertools.groupby(map(keyed, _json_lines(path, source)), key=lambda k: k[0]):
        if isinstance(key, InputError):
            yield key
            continue
        run = [utterance for _, utterance in group]
        line = run[0][0]
        run = _in_order(run, "timestamp")
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

        def locate(i: int, part: str, run: list = run, role_fields: list = role_fields) -> tuple[int, str]:
            return run[i][0], {"role": role_fields[i], "agent_type": "meta.agent_type"}.get(part, part)

        yield _Raw(id=key, line=line, turns=turns, locate=locate, id_field="conversation_id")


# ---- small value helpers ---------------------------------------------------------------------


def _missing(value: Any) -> bool:
    """None, NaN, NaT or a blank string: an empty cell in any of the formats."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return value != value
    return type(value).__name__ in ("NaTType", "NAType")


def _id_key(value: Any) -> str | None:
    """The id as make_transcript spells it (None when missing), to find duplicates early."""
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _value(row: Mapping[str, Any], column: str | None) -> Any:
    return None if column is None or _missing(row[column]) else row[column]


def _plain(value: Any) -> Any:
    """A JSON-ready scalar for metadata (numpy numbers, dates), or None when missing or nested."""
    if _missing(value):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalar
        return value.item()
    return None


def _has_surrogate(value: Any) -> bool:
    """Whether a string holds a lone surrogate: what invalid UTF-8 becomes under surrogateescape."""
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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

"""Output rows to JSONL, CSV, TSV or Parquet, and rejected transcripts to an errors file: written
chunk by chunk, each chunk flushed and synced to disk, the file locked while it is written.

What a kill or an interruption leaves:
- JSONL, CSV: every chunk written before it, complete; a write cut short by an exception
  (Ctrl-C) is taken back, so the file ends with a complete row; a write cut short by SIGKILL
  or a power loss can leave a partial last line, which `resume` drops.
- Parquet: complete after Ctrl-C (the footer is written on the way out); unreadable after
  SIGKILL (a Parquet file is only readable once its footer is written).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError, OutputError, UsageError
from ..redact import redact_text
from ..schema import OUTPUT_COLUMNS, row_columns
from .formats import SCORE_FORMATS, format_of
from .jsonl import json_line

try:
    import fcntl
except ImportError:  # not POSIX: no OS lock (see README, "Guarantees")
    fcntl = None  # type: ignore[assignment]

def output_format(path: str | Path | None) -> str:
    """The format an output path's extension names (JSONL for stdout, `path` None)."""
    if path is None:
        return "jsonl"
    try:
        return format_of(path, SCORE_FORMATS, "the output")
    except InputError as exc:
        raise ValueError(exc.reason) from None


_PARQUET_KINDS = {"float": "float64", "int": "int64"}


def open_locked(path: str | Path, buffered: bool = True) -> BinaryIO:
    """`path` opened for reading and writing (created when missing, never truncated here) under
    an exclusive OS lock (`flock`), held until the file is closed. The OS drops the lock when
    its process dies, so a killed run never leaves a stale one. Raises OutputError when another
    process (or another open file in this one) holds it. Unbuffered (`buffered=False`), every
    write goes straight to the OS: nothing is left in a buffer to be written later."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{path} is being written by another process (it holds the "
                              "file's lock); wait for that run to finish, or write elsewhere"
                              ) from None
    return os.fdopen(fd, "r+b", buffering=-1 if buffered else 0)


@dataclass
class ResumeState:
    """What an output file already holds, read back before resuming it.

    `ids`: the transcript ids of its complete rows; `models`: each distinct `model` of those
    rows (name, version, weights_sha256, precision; rows of schema 1.0 have no precision and
    count as "fp32", the only default then) with its row count; `per_turn`: whether its rows
    have `turns` (None without rows); `size`: bytes up to the end of the last complete line;
    `partial_bytes`: bytes after it (a last line without its newline, left by a kill), which
    resuming drops.
    """

    ids: set[str] = field(default_factory=set)
    models: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    per_turn: bool | None = None
    size: int = 0
    partial_bytes: int = 0

    @property
    def rows(self) -> int:
        return len(self.ids)

    def add(self, row: Mapping[str, Any]) -> bool:
        """Count one output row (an id and a `model` object); False, counting nothing, when
        its id has a row already."""
        if row["id"] in self.ids:
            return False
        self.ids.add(row["id"])
        model = row.get("model") or {}
        key = (str(model.get("name")), str(model.get("version")), str(model.get("weights_sha256")),
               str(model.get("precision", "fp32")))
        self.models[key] = self.models.get(key, 0) + 1
        self.per_turn = "turns" in row if self.per_turn is None else self.per_turn
        return True


def read_resume_state(handle: BinaryIO, path: str | Path) -> ResumeState:
    """Read a JSONL output back: every complete line must be a row written by qualaudit (an
    object with a string `id` not seen before and a `model`), else OutputError naming the line."""
    state = ResumeState()
    handle.seek(0)
    for number, data in enumerate(handle, 1):
        if not data.endswith(b"\n"):
            state.partial_bytes = len(data)
            break
        state.size += len(data)
        item = json_line(data, number, str(path))
        if isinstance(item, InputError):
            raise _unreadable(path, number, item.reason)
        row = item[1] if item is not None else None
        model = row.get("model") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(model, dict):
            raise _unreadable(path, number, "not an output row (an object with an id and a model)")
        if not state.add(row):
            raise _unreadable(path, number, f"a second row for transcript {row['id']!r}")
    return state


def _unreadable(path: str | Path, number: int, problem: str) -> OutputError:
    return OutputError(f"cannot resume {path}: line {number} is {problem}; only a file written "
                       "by qualaudit score can be resumed. Move it aside, or fix that line")


class RowWriter:
    """Writes rows in the format the path's extension names (JSONL to stdout without a path).

    Flat tables (CSV, TSV, Parquet) hold nested fields as JSON text, and add one
    `metadata.<key>` column per metadata key found in the first chunk of rows, after the row's
    own columns, so that rows can be grouped by `team` (say) without parsing; a key first
    seen later stays in the JSON `metadata` column only (the header is written by then). In
    Parquet such a column is float64 when every value of the first chunk is a number, else
    text. CSV and TSV text cells that a spreadsheet would run as a formula (starting with
    =, +, -, @, or a quote) get a leading quote `'`; `qualaudit.io.read_scores` takes it off.

    The file is locked while it is open (see `open_locked`). Each `write` call ends durably on
    disk (flushed and synced), so a killed run keeps what it wrote; an exception during a write
    (Ctrl-C) takes that write back on `close`. With `resume=True` (JSONL only) the rows already
    in the file are kept and read back into `resumed` (a `ResumeState`): new rows go after its
    last complete line, and a partial last line is dropped at the first write.
    """

    def __init__(self, path: str | Path | None, per_turn: bool = False, *,
                 resume: bool = False) -> None:
        self.format = output_format(path)
        self.path = Path(path) if path is not None else None
        self.columns = row_columns(per_turn)
        self.metadata_keys: list[str] | None = None  # flat tables: set by the first write
        self.rows_written = 0
        self.resumed: ResumeState | None = None
        self._parquet = None
        self._file: BinaryIO | None = None
        self._committed = 0  # bytes known to be complete rows (JSONL, CSV)
        self._dirty = False  # a write is in progress (or was cut short)
        self._end = 0  # where the write in progress ends
        if resume and (self.path is None or self.format != "jsonl"):
            raise UsageError("resuming needs a JSONL output file (-o OUT.jsonl): "
                             f"{'stdout' if self.path is None else self.format} cannot be resumed")
        if self.path is None:
            return
        self._file = open_locked(self.path, buffered=self.format == "parquet")
        if resume:
            self.resumed = read_resume_state(self._file, self.path)
            self._committed = self.resumed.size
        else:
            self._file.truncate(0)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        first = self.metadata_keys is None and self.format != "jsonl"
        if first:
            self.metadata_keys = list(dict.fromkeys(k for r in rows for k in r.get("metadata") or {}))
        if self.format == "parquet":
            self._write_parquet(rows)
        elif self.format in ("csv", "tsv"):
            self._append(self._csv_text(rows, header=first))
        else:
            self._append("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.rows_written += len(rows)

    def _append(self, text: str) -> None:
        if self._file is None:  # stdout
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        data = memoryview(text.encode("utf-8"))
        self._dirty, self._end = True, self._committed + len(data)
        self._file.seek(self._committed)
        self._file.truncate()  # a partial line left by a kill goes before the first new row
        while data:  # unbuffered: a write may take only part of the bytes
            data = data[self._file.write(data):]
        self._committed, self._dirty = self._end, False
        os.fsync(self._file.fileno())

    def _take_back(self) -> None:
        """After a write cut short (Ctrl-C): keep it if all its bytes reached the file, else
        cut the file back to the end of the last complete row."""
        if os.fstat(self._file.fileno()).st_size >= self._end:
            self._committed = self._end
        self._file.truncate(self._committed)

    @property
    def flat_columns(self) -> list[str]:
        """The columns of a flat table: the row's, then one per metadata key."""
        return self.columns + [f"metadata.{k}" for k in self.metadata_keys or ()]

    def _csv_text(self, rows: Sequence[Mapping[str, Any]], header: bool) -> str:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.flat_columns,
                                delimiter="\t" if self.format == "tsv" else ",")
        if header:
            writer.writeheader()
        writer.writerows({k: formula_guarded(v) for k, v in
                          flat_row(r, self.metadata_keys or ()).items()} for r in rows)
        return buffer.getvalue()

    def _write_parquet(self, rows: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = self.metadata_keys or ()
        if self._parquet is None:
            kinds = {c.name: _PARQUET_KINDS.get(c.kind, "string") for c in OUTPUT_COLUMNS}
            for key in keys:
                values = [(r.get("metadata") or {}).get(key) for r in rows]
                numbers = all(v is None or _is_number(v) for v in values)
                kinds[f"metadata.{key}"] = "float64" if numbers else "string"
            schema = pa.schema([(c, pa.type_for_alias(kinds[c])) for c in self.flat_columns])
            self._parquet = pq.ParquetWriter(self._file, schema)
        numeric = {f.name for f in self._parquet.schema if f.type == pa.float64()}
        flat = [flat_row(r, keys) for r in rows]
        for row in flat:  # a later value that is not a number stays in the JSON column only
            for name in numeric & row.keys():
                if name.startswith("metadata.") and not (row[name] is None or _is_number(row[name])):
                    row[name] = None
        table = pa.Table.from_pylist(flat, schema=self._parquet.schema)
        self._parquet.write_table(table)
        self._file.flush()
        os.fsync(self._file.fileno())

    def rows_on_disk(self) -> int | None:
        """Rows the JSONL output file holds now, counted from the file itself (None for stdout,
        CSV and Parquet): the run's accounting checks it against what it wrote."""
        if self._file is None or self.format != "jsonl":
            return None
        self._file.seek(0)
        count, left = 0, self._committed
        while left > 0:
            block = self._file.read(min(left, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
        return count

    def close(self) -> None:
        try:
            if self.format == "parquet" and self._file is not None:
                if self._parquet is None:  # no rows at all: still leave a valid, empty file
                    self._write_parquet([])
                self._parquet.close()
            elif self._dirty and self._file is not None:
                self._take_back()
            elif self.format in ("csv", "tsv") and self._file is not None and not self.rows_written:
                self.metadata_keys = []
                self._append(self._csv_text([], header=True))  # no rows: still the header
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flat_row(row: Mapping[str, Any], metadata_keys: Sequence[str] = ()) -> dict[str, Any]:
    """A row for flat tables (CSV, Parquet): nested fields become JSON strings, and each of
    `metadata_keys` a `metadata.<key>` cell (None where the row has no such key)."""
    flat = {k: _json_text(v) for k, v in row.items()}
    metadata = row.get("metadata") or {}
    for key in metadata_keys:
        flat[f"metadata.{key}"] = _json_text(metadata.get(key))
    return flat


def formula_guarded(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula (=, +, -, @ first; also a leading
    quote, so that the guard can be taken off unambiguously) with a quote `'` put first;
    anything else (numbers included) as it is. `formula_unguarded` undoes it."""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


def formula_unguarded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] == "'" and value[1:2] in _FORMULA_STARTS:
        return value[1:]
    return value


_FORMULA_STARTS = ("=", "+", "-", "@", "'")


def _json_text(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def error_record(error: InputError) -> dict[str, Any]:
    """A rejected transcript as one errors-file object: where it is (source file, line or
    row, id when known, field) and why; never its text (reason and hint are redacted too, in
    case a short label value they quote holds personal data)."""
    return {"source": error.source, "line": error.line, "id": error.transcript_id,
            "field": error.field, "reason": redact_text(error.reason),
            "hint": redact_text(error.hint) if error.hint else None}


class ErrorWriter:
    """Rejected transcripts to a JSONL file (see `error_record`), locked like the output,
    written from scratch by each run, each record flushed as it comes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open_locked(self.path)
        self._file.truncate(0)
        self.count = 0

    def write(self, error: InputError) -> None:
        self._file.write((json.dumps(error_record(error), ensure_ascii=False) + "\n").encode())
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> ErrorWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Transcripts as rows of a Ray dataset: what the readers make, the one place a duplicate id
is found across the whole dataset, and how user datasets become such rows.

A record row holds one transcript read by `qualaudit.io` (pickled, so that it reaches the
scoring actor exactly as validated) or the error that rejected it, with where it was read:

    key         "id:<id>" for a transcript or error with an id, else "at:<uuid>" (groups rows)
    id          the normalised transcript id, or None
    source      file the record was read from ("<ray.data.Dataset>" for a user dataset)
    line        1-based line or row in `source`, or None
    transcript  the pickled `Transcript`, or None for an error
    error       the `--errors` record (JSON text), or None
    status      "ok", "rejected", or "resumed" (its id has a row in the output already)
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import InputError, UsageError
from ...io import ColumnMap, iter_records
from ...io.columns import resolve_columns
from ...io.formats import SUFFIX_FORMATS
from ...io.writers import error_record
from ...schema import Transcript

DATASET_SOURCE = "<ray.data.Dataset>"
_BLOCK_RECORDS = 256  # records per block a reader yields: small blocks keep actors busy


def record_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("id", pa.string()), ("source", pa.string()),
                      ("line", pa.int64()), ("transcript", pa.binary()), ("error", pa.string()),
                      ("status", pa.string())])


RECORD_COLUMNS = ("key", "id", "source", "line", "transcript", "error", "status")


def record(item: Transcript | InputError) -> dict[str, Any]:
    """One record row for a transcript or for the error that rejected one."""
    if isinstance(item, Transcript):
        return {"key": f"id:{item.id}", "id": item.id, "source": item.source, "line": item.line,
                "transcript": pickle.dumps(item, protocol=5), "error": None, "status": "ok"}
    return error_row(item)


def error_row(error: InputError) -> dict[str, Any]:
    tid = error.transcript_id
    return {"key": f"id:{tid}" if tid is not None else f"at:{uuid.uuid4().hex}", "id": tid,
            "source": error.source, "line": error.line, "transcript": None,
            "error": json.dumps(error_record(error), ensure_ascii=False), "status": "rejected"}


def record_tables(records: Iterable[Transcript | InputError]) -> Iterator[Any]:
    """Record rows in pyarrow tables of `_BLOCK_RECORDS` rows."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for item in records:
        rows.append(record(item))
        if len(rows) == _BLOCK_RECORDS:
            yield pa.Table.from_pylist(rows, schema=record_schema())
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=record_schema())


def transcript_files(path: str | Path) -> list[Path]:
    """The files an input names: a file, a ConvoKit corpus directory, or a folder of transcript
    files (JSONL, CSV, TSV, Parquet: every file with such an extension, sorted, not recursive)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", source=str(path),
                         hint="Check the path (a relative path starts at the current directory)")
    if not path.is_dir() or (path / "utterances.jsonl").is_file():
        return [path]
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith((".", "_"))
                   and SUFFIX_FORMATS.get(p.suffix.lower()) not in (None, "convokit"))
    if not files:
        raise InputError("a folder without transcript files; expected .jsonl, .csv, .tsv or "
                         ".parquet files (or a ConvoKit corpus with utterances.jsonl)",
                         source=str(path))
    return files


class TranscriptFiles:
    """A Ray datasource: one read task per file, each reading its file with `qualaudit.io`, so
    that every bad line or row is an error record with its file and line (never a lost block)
    and ids repeated inside one file are found as in `qualaudit score`. Files must be readable
    at the same path on every node (a shared filesystem).

    Defined as a subclass of `ray.data.Datasource` by `datasource()`, so that this module does
    not import ray."""

    def __init__(self, files: list[Path], *, format: str = "auto",
                 columns: ColumnMap | None = None, role_map: Any = None) -> None:
        self.files = [str(f) for f in files]
        self.options = {"format": format, "columns": columns, "role_map": role_map}

    def check(self) -> None:
        """Raise the errors that make a file unreadable as a whole (missing columns, unknown
        format) on the driver, before any task runs; InputError when no file holds a
        transcript at all."""
        empty = 0
        for path in self.files:
            records = iter_records(path, **self.options)
            empty += next(records, None) is None
            records.close()
        if empty == len(self.files):
            raise InputError("no transcripts found in any input file (empty files, blank lines "
                             "only, or a header without rows)", source=", ".join(self.files))

    def read_tasks(self) -> list[Any]:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        def read(path: str, options: Mapping[str, Any]) -> Iterator[Any]:
            return record_tables(iter_records(path, **options))

        return [ReadTask(lambda p=path: read(p, self.options),
                         BlockMetadata(num_rows=None, size_bytes=os.path.getsize(path),
                                       exec_stats=None, input_files=(path,)))
                for path in self.files]


def datasource(files: TranscriptFiles) -> Any:
    """`files` as a `ray.data.Datasource` for `ray.data.read_datasource`."""
    from ray.data import Datasource

    class _Source(Datasource):
        def get_name(self) -> str:
            return "QualauditTranscripts"

        def estimate_inmemory_data_size(self) -> int:
            return sum(os.path.getsize(p) for p in files.files)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            return files.read_tasks()

    return _Source()


def first_wins(group: Any, skip_ids: frozenset[str] = frozenset()) -> Any:
    """One group of record rows with the same key: the first by (source, line) stays, each later
    transcript becomes a duplicate-id error (as in `qualaudit score`, where the first
    occurrence of an id wins even when it was itself rejected); a kept transcript whose id is in
    `skip_ids` is marked "resumed"."""
    import pyarrow as pa

    rows = sorted(group.to_pylist(), key=lambda r: (r["source"] or "", r["line"] or 0))
    first = rows[0]
    if first["status"] == "ok" and first["id"] in skip_ids:
        first = {**first, "transcript": None, "status": "resumed"}
    out = [first]
    for row in rows[1:]:
        if row["status"] == "ok":
            where = f"{first['source']} line {first['line']}"
            row = error_row(InputError(
                f"duplicate id {row['id']!r}, first seen at {where}", source=row["source"],
                line=row["line"], transcript_id=row["id"], field="id",
                hint="Each transcript needs its own id: rename or remove the duplicate"))
        out.append(row)
    return pa.Table.from_pylist(out, schema=record_schema())


def user_records(ds: Any, *, columns: ColumnMap | None = None, role_map: Any = None) -> Any:
    """A user's dataset as record rows: records already (from `read_transcripts`) as they are;
    JSONL-shaped rows (an `id` with `messages` or `turns`) validated batch by batch; long rows
    (one turn per row) grouped by their id column and read like a DataFrame. Such rows have no
    line numbers (a `path` column, as Ray's readers add with include_paths=True, is kept as
    their source), so which of two rows with the same id is kept is not defined."""
    names = list(ds.schema().names)
    if set(RECORD_COLUMNS) <= set(names):
        return ds
    if {"messages", "turns"} & set(names):
        return ds.map_batches(_object_records, fn_kwargs={"role_map": role_map},
                              batch_format="pyarrow")
    found = resolve_columns([n for n in names if n != "path"], columns, DATASET_SOURCE)
    if found.order is None:
        raise UsageError(
            "long rows (one turn per row) on Ray need an order column (a turn index or a "
            "timestamp): Ray does not keep the order of rows. Add one, or name it with "
            f"ColumnMap(order=...); columns found: {', '.join(names)}")
    return ds.groupby(found.id).map_groups(
        _long_records, fn_kwargs={"columns": columns, "role_map": role_map},
        batch_format="pandas")


def _object_records(batch: Any, role_map: Any) -> Any:
    import pyarrow as pa

    items = batch.to_pylist()
    sources = [item.pop("path", None) or DATASET_SOURCE for item in items]
    for item in items:  # Arrow gives every row every key of the column's struct: None if absent
        if isinstance(item.get("metadata"), dict):
            item["metadata"] = {k: v for k, v in item["metadata"].items() if v is not None}
    rows = [_dataset_record(one, source) for item, source in zip(items, sources)
            for one in iter_records([item], role_map=role_map)]
    return pa.Table.from_pylist(rows, schema=record_schema())


def _long_records(frame: Any, columns: ColumnMap | None, role_map: Any) -> Any:
    import pyarrow as pa

    source = DATASET_SOURCE
    if "path" in frame.columns:
        source = str(frame["path"].iloc[0])
        frame = frame.drop(columns=["path"])
    rows = [_dataset_record(item, source)
            for item in iter_records(frame, columns=columns, role_map=role_map)]
    return pa.Table.from_pylist(rows, schema=record_schema())


def _dataset_record(item: Transcript | InputError, source: str) -> dict[str, Any]:
    """The record of `item` read from rows of a user's dataset: its source is `source` (not
    the batch it was read from), and it has no line."""
    if isinstance(item, Transcript):
        return record(replace(item, source=source, line=None))
    return error_row(InputError(item.reason, hint=item.hint, source=source,
                                transcript_id=item.transcript_id, field=item.field,
                                turn=item.turn, part=item.part))

"""Score files read back: the rows `qualaudit score` wrote, in any of its output formats, as
the same plain dicts (for agreement, reports and anything else that reads them)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..schema import OUTPUT_COLUMNS
from .formats import SCORE_FORMATS, format_of
from .jsonl import json_objects
from .writers import formula_unguarded

_KINDS = {c.name: c.kind for c in OUTPUT_COLUMNS}


def read_scores(path: str | Path) -> list[dict[str, Any]]:
    """The rows `qualaudit score` wrote (JSONL, CSV, TSV or Parquet, by extension), with the
    nested fields flat tables store as JSON strings (`resolution_dist`, `turns`, ...) decoded
    and empty cells as None, so every format gives the same rows. Rows of every schema 1.x
    are read; columns this version does not know (and the flat tables' `metadata.<key>`
    columns) are kept as they are.

    Raises:
        InputError: naming the file, line (or data row + 1 for the header) and field.
    """
    return [row for _, row in iter_scores(path)]


def iter_scores(path: str | Path, batch_rows: int = 8192) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for each row of a score file, as `read_scores` reads them, streamed: JSONL
    a line, CSV/TSV a row, Parquet a record batch (of `batch_rows`) at a time, so that a file
    of millions of rows is read in bounded memory. `line` is the JSONL line, the CSV line
    (header = 1) or the Parquet row (1-based)."""
    path = Path(path)
    fmt = format_of(path, SCORE_FORMATS, "the scores file")
    items: Iterable[tuple[int, Mapping[str, Any]]]
    if fmt == "parquet":
        items = _parquet_rows(path, batch_rows)
    elif fmt in ("csv", "tsv"):
        items = _csv_rows(path, "\t" if fmt == "tsv" else ",")
    else:
        items = json_objects(path)
    for line, raw in items:
        row = dict(raw) if fmt == "jsonl" else decoded_row(raw, str(path), line)
        if row.get("id") in (None, ""):
            raise InputError("a score row without an id", source=str(path), line=line, field="id")
        yield line, row


def row_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """A score row's metadata as one dict, however its file held it: a dict (JSONL, a Parquet
    struct), JSON text (CSV, already decoded by `iter_scores`), or `metadata.<key>` columns
    (CSV and Parquet since schema 1.1), which win over the JSON where both are present."""
    metadata = row.get("metadata")
    merged = dict(metadata) if isinstance(metadata, Mapping) else {}
    for key, value in row.items():
        if isinstance(key, str) and key.startswith("metadata.") and value is not None:
            merged[key[len("metadata."):]] = value
    return merged


def _parquet_rows(path: Path, batch_rows: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    line = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for raw in batch.to_pylist():
            line += 1
            yield line, raw


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        for raw in reader:
            # the reader's own line count: a quoted cell may span lines
            yield reader.line_num, {k: formula_unguarded(v) for k, v in raw.items()}


def decoded_row(raw: Mapping[str, Any], source: str, line: int) -> dict[str, Any]:
    """A flat-table row (CSV, Parquet, a Ray dataset) as `qualaudit score` writes it to JSONL:
    nested fields decoded from their JSON text, empty cells as None."""
    row: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _KINDS.get(key)
        if value == "" or (isinstance(value, float) and math.isnan(value)):
            value = None
        elif isinstance(value, str) and kind == "json":
            try:
                value = json.loads(value)
            except ValueError:
                raise InputError("expected JSON text", source=source, line=line, field=key) from None
        elif isinstance(value, str) and kind in ("float", "int"):
            try:
                value = float(value) if kind == "float" else int(value)
            except ValueError:
                raise InputError(f"expected a number, found {value!r}", source=source, line=line,
                                 field=key) from None
        row[key] = value
    return row

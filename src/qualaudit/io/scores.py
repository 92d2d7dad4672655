"""Score files read back: the rows `qualaudit score` wrote, in any of its output formats, as
the same plain dicts (for agreement, reports and anything else that reads them)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
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
    path = Path(path)
    fmt = format_of(path, SCORE_FORMATS, "the scores file")
    items: Iterable[tuple[int, Mapping[str, Any]]]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        items = enumerate(pq.read_table(path).to_pylist(), 1)
    elif fmt in ("csv", "tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
            items = [(line, {k: formula_unguarded(v) for k, v in raw.items()})
                     for line, raw in enumerate(reader, 2)]
    else:
        items = json_objects(path)
    rows = []
    for line, raw in items:
        row = dict(raw) if fmt == "jsonl" else decoded_row(raw, str(path), line)
        if row.get("id") in (None, ""):
            raise InputError("a score row without an id", source=str(path), line=line, field="id")
        rows.append(row)
    return rows


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

"""Output rows to JSONL, CSV or Parquet, written and flushed chunk by chunk."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .schema import ROW_FIELDS

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: str | Path | None) -> str:
    if path is None:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the output format of {str(path)!r} from its extension; "
                         f"use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]
_FLOAT_COLUMNS = ("resolution", "satisfaction", "empathy", "repeat_inquiry", "escalation")
_INT_COLUMNS = ("escalation_turn", "n_turns")


class RowWriter:
    """Writes rows in the format the path's extension names (JSONL to stdout without a path).
    Each `write` call ends durably on disk (flushed), so a killed run keeps what it wrote."""

    def __init__(self, path: str | Path | None, per_turn: bool = False) -> None:
        self.format = output_format(path)
        self.path = Path(path) if path is not None else None
        self.columns = [c for c in ROW_FIELDS if per_turn or c != "turns"]
        self._parquet = None
        if self.format == "parquet":
            self._stream = None
        elif self.path is None:
            self._stream = sys.stdout
        else:
            self._stream = open(self.path, "w", encoding="utf-8", newline="")
        if self.format == "csv":
            self._csv = csv.DictWriter(self._stream, fieldnames=self.columns)
            self._csv.writeheader()

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.format == "jsonl":
            self._stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        elif self.format == "csv":
            self._csv.writerows(flat_row(r) for r in rows)
        else:
            self._write_parquet(rows)
            return
        self._stream.flush()

    def _write_parquet(self, rows: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            types = {c: pa.float64() for c in _FLOAT_COLUMNS} | {c: pa.int64() for c in _INT_COLUMNS}
            schema = pa.schema([(c, types.get(c, pa.string())) for c in self.columns])
            self._parquet = pq.ParquetWriter(str(self.path), schema)
        table = pa.Table.from_pylist([flat_row(r) for r in rows], schema=self._parquet.schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self.format == "parquet":  # no rows at all: still leave a valid, empty file
            self._write_parquet([])
            self._parquet.close()
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for flat tables (CSV, Parquet): nested fields become JSON strings."""
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
        for k, v in row.items()
    }

"""Long tables (one row per turn): CSV/TSV, Parquet, DataFrame, Dataset."""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import normalize_id
from .columns import ColumnMap, _Columns, resolve_columns
from .objects import _TURN_LISTS, _object_record
from .records import _OBJECT_DUPLICATE_HINT, _TABLE_DUPLICATE_HINT, ReadProgress, _Raw, _Stream
from .values import _is_scalar, _sort_keys, _value

_CHUNK_ROWS = 10_000
_CSV_HINT = ("Quote every field that holds the separator, a quote or a line break (\"...\", with "
             "inner quotes doubled) and keep each field under {limit} characters, or export the "
             "table again; the transcript of that row is left out")


_Row = tuple[int, Mapping[str, Any]]  # (data row number, {column: value})
_RowSource = Callable[[_Columns | None], Iterable[_Row]]


def _rows_stream(names: list[str], rows: _RowSource, columns: ColumnMap | None,
                 source: str) -> _Stream:
    """A row-wise source: one transcript per row with a messages/turns column, else a long table."""
    if any(k in names for k in _TURN_LISTS):
        records = (_object_record(row, number, source) for number, row in rows(None))
        return _Stream(records, source, "row", _OBJECT_DUPLICATE_HINT)
    cols = resolve_columns(names, columns, source)
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


def _csv_stream(path: Path, sep: str, columns: ColumnMap | None,
                progress: ReadProgress) -> _Stream:
    """A CSV/TSV long table. Invalid UTF-8 bytes are kept as lone surrogates (surrogateescape),
    so make_transcript rejects exactly the transcript whose row holds them."""
    source = str(path)
    with _open_csv(path) as handle:
        header = _csv_header(csv.reader(handle, delimiter=sep, strict=True), source)
    cols = resolve_columns(header, columns, source)
    rows = _csv_rows(path, sep, cols, source, progress)
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
    that the id of a record the reader cannot parse can still be read from it, and counting
    the bytes they came from in `progress` (a text handle cannot tell() while it is read)."""

    def __init__(self, lines: Iterable[str], progress: ReadProgress) -> None:
        self._lines = iter(lines)
        self._progress = progress
        self.first: str | None = None

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        # as _open_csv decoded it: invalid bytes come back as they were, newlines untranslated
        self._progress.bytes_read += len(line.encode("utf-8", "surrogateescape"))
        if self.first is None:
            self.first = line
        return line


def _csv_rows(path: Path, sep: str, cols: _Columns, source: str,
              progress: ReadProgress) -> Iterator[_Row | InputError]:
    """Each data row as {column: cell} over the columns used, numbered from 1 (blank lines
    are not rows). A row with another number of fields than the header, or with broken
    quoting, is an InputError naming its data row, its physical lines and its id."""
    with path.open("rb") as raw:  # the byte order mark utf-8-sig drops is read all the same
        progress.bytes_read = len(codecs.BOM_UTF8) if raw.read(3) == codecs.BOM_UTF8 else 0
    with _open_csv(path) as handle:
        lines = _RecordLines(handle, progress)
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


def _parquet_stream(path: Path, columns: ColumnMap | None, progress: ReadProgress) -> _Stream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read as Parquet: {exc}", source=str(path),
                         hint="Check that the file is Parquet, or pass --format") from None
    return _rows_stream(names, partial(_parquet_rows, path, progress=progress), columns,
                        str(path))


def _parquet_rows(path: Path, cols: _Columns | None, *,
                  progress: ReadProgress) -> Iterator[_Row]:
    """Rows a batch at a time; `progress` is the share of rows read times the file's size
    (a compressed column chunk has no byte position of its own to report)."""
    import pyarrow.parquet as pq

    number, size = 0, progress.total_bytes or 0
    with pq.ParquetFile(path) as parquet:
        n_rows = parquet.metadata.num_rows
        for batch in parquet.iter_batches(batch_size=_CHUNK_ROWS,
                                          columns=cols.used if cols else None):
            progress.bytes_read = size * (number + batch.num_rows) // max(n_rows, 1)
            for row in batch.to_pylist():
                number += 1
                yield number, row
    progress.bytes_read = size


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

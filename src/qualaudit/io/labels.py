"""A team's own QA labels, read from a labels file (for `qualaudit train --labels` and
`qualaudit evaluate`).

Labels file: CSV, TSV or JSONL (by extension), keyed by transcript `id`; every column but
`id` is optional and an empty cell (JSON null or a missing key) means "no label":

| column | values | maps onto |
|---|---|---|
| `resolution` | 0/1 (or true/false) | the resolution scale: 1 -> all mass on grade +1, 0 -> on -1 |
| `resolution_grade` | -2..2, the STC-3 scale | one-hot on that grade |
| `satisfaction` | -2..2 only | one-hot on that grade (a 1-5 rating is rating - 3) |
| `repeat_inquiry` | 0/1 | the repeat-inquiry probability (e.g. from `recontact_labels`) |
| `escalation` | 0/1 | the escalation probability |
| `empathy` | 0..2 | with `turn`: that agent turn; with an empty `turn`: the whole conversation |
| `turn` | 0-based input index of an agent turn (as `escalation_turn` and evidence count) | |

A 0/1 resolution and a -2..2 grade are separate columns because 0 and 1 are valid in both
and mean different things (0: not resolved vs neutral). Binary resolution lands on +-1: the
reported `resolution` is P(grade > 0), which it trains exactly; the finer grade stays the
public data's job. Satisfaction 1-5 is refused (3, 4, 5 are out of range) rather than
guessed, since 1 and 2 are valid -2..2 grades too.

Empathy: a 0..2 grade is put on each of the three EPITOME mechanisms, so a turn graded g has
an expected empathy score of g/2 (a score of 0.5 means "some empathy"). A conversation-level
grade (empty `turn`) labels every agent turn of the conversation, as the reported
`empathy` is their mean; when an id also has turn rows, only those turns are labelled.

One id may span several rows: at most one with an empty `turn` and one per turn. The
conversation columns may be repeated on any of its rows but must then agree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import is_missing, normalize_id
from .formats import LABEL_FORMATS, format_of
from .jsonl import json_objects

BINARY = ("resolution", "repeat_inquiry", "escalation")
GRADES = {"resolution_grade": (-2, 2), "satisfaction": (-2, 2), "empathy": (0, 2)}
CONVERSATION_COLUMNS = ("resolution", "resolution_grade", "satisfaction", "repeat_inquiry",
                        "escalation")
COLUMNS = ("id", "turn", *CONVERSATION_COLUMNS, "empathy")


def read_labels(path: str | Path) -> dict[str, dict[str, Any]]:
    """{transcript id: labels} from a CSV/TSV/JSONL labels file (format in the module doc).

    Each id's dict holds the conversation labels given (ints: 0/1 or a grade), `empathy`
    when conversation-level, `empathy_turns` ({turn index: grade}) when any, and `source`
    and `line` (its first row) for later messages.

    Raises:
        InputError: naming the file, line and field: an unknown column (with the accepted
            ones), a bad value, a second row for the same id (and turn), or conversation
            labels of one id that disagree.

    Example:
        >>> labels = read_labels("qa_labels.csv")  # doctest: +SKIP
        >>> labels["c17"]
        {'source': 'qa_labels.csv', 'line': 2, 'resolution': 1, 'satisfaction': -1}
    """
    path = Path(path)
    fmt = format_of(path, LABEL_FORMATS, "the labels file")
    rows = json_objects(path) if fmt == "jsonl" else _csv_rows(path, "\t" if fmt == "tsv" else ",")
    labels: dict[str, dict[str, Any]] = {}
    seen_rows: dict[tuple[str, int | None], int] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, row in rows:
        where = {"source": str(path), "line": line}
        _check_columns(list(row), where)
        tid = normalize_id(row.get("id"))
        if tid is None:
            raise InputError("missing id", field="id", hint="Every row needs the transcript id",
                             **where)
        where["transcript_id"] = tid
        turn = _integer(row.get("turn"), "turn", 0, None, where)
        if (tid, turn) in seen_rows:
            what = "conversation row" if turn is None else f"row for turn {turn}"
            raise InputError(f"a second {what} of this id (the first is on line "
                             f"{seen_rows[tid, turn]})", field="id" if turn is None else "turn",
                             hint="Keep one row per id (and turn)", **where)
        seen_rows[tid, turn] = line
        entry = labels.setdefault(tid, {"source": str(path), "line": line})
        for column in CONVERSATION_COLUMNS:
            value = _label(row.get(column), column, where)
            if value is None:
                continue
            if column in entry and entry[column] != value:
                raise InputError(f"{entry[column]} on line {first_line[tid, column]} for the "
                                 f"same id, {value} here", field=column,
                                 hint="Give each conversation label once, or the same value",
                                 **where)
            entry[column] = value
            first_line.setdefault((tid, column), line)
        empathy = _label(row.get("empathy"), "empathy", where)
        if empathy is not None:
            if turn is None:
                entry["empathy"] = empathy
            else:
                entry.setdefault("empathy_turns", {})[turn] = empathy
        grade, binary = entry.get("resolution_grade"), entry.get("resolution")
        if grade is not None and binary is not None and (grade > 0) != bool(binary):
            raise InputError(f"resolution {binary} disagrees with resolution_grade {grade} "
                             "(resolved means a grade above 0)", field="resolution", **where)
    return labels


def _check_columns(names: list[str], where: Mapping[str, Any], need_id: bool = False) -> None:
    unknown = [k for k in names if k not in COLUMNS]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}; accepted: {', '.join(COLUMNS)}",
                         field=unknown[0], hint="Rename or drop the other columns", **where)
    if need_id and "id" not in names:
        raise InputError(f"no id column; found {names}", field="id",
                         hint="Name the transcript id column `id`", **where)


def _label(value: Any, column: str, where: Mapping[str, Any]) -> int | None:
    if column in GRADES:
        low, high = GRADES[column]
        hint = "A 1-5 rating is rating - 3 on -2..2" if column == "satisfaction" else None
        return _integer(value, column, low, high, where, hint)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return int(value.strip().lower() == "true")
    if isinstance(value, bool):
        return int(value)
    hint = "For a -2..2 grade use the column resolution_grade" if column == "resolution" else None
    return _integer(value, column, 0, 1, where, hint)


def _integer(value: Any, column: str, low: int, high: int | None, where: Mapping[str, Any],
             hint: str | None = None) -> int | None:
    if is_missing(value):
        return None
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not number.is_integer() or number < low \
            or (high is not None and number > high):
        raise InputError(f"expected {expected}, found {value!r}", field=column, hint=hint, **where)
    return int(number)


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    source = str(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"invalid UTF-8 at byte {exc.start}", source=source,
                         line=data[:exc.start].count(b"\n") + 1,
                         hint="Re-encode the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"cannot read the header ({exc})", source=source, line=1) from None
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise InputError(f"column(s) {repeated} appear more than once in the header",
                         source=source, line=1)
    _check_columns(header, {"source": source, "line": 1}, need_id=True)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"cannot parse the row ({exc})", source=source, line=start) from None
        end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise InputError(f"expected {len(header)} fields as in the header, found {len(cells)}",
                             source=source, line=start)
        yield start, dict(zip(header, cells))

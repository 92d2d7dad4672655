"""Small value helpers shared by the readers: cells, keys, lists, JSON type names, sort keys."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..normalize import is_missing


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

"""Repeat-inquiry labels from a user's own logs: did the customer come back within N days?

The `repeat_inquiry` head is trained on public data that only approximates "the customer
had to come back"; a support team's own logs say it directly, through the customer id and
the conversations' times. These labels are what `datasets.user` and `agreement` take in
the `repeat_inquiry` column.

Example:
    >>> labels = recontact_labels("chats.jsonl", window_days=7)  # doctest: +SKIP
    >>> labels["c1"]   # True, False, or None when it cannot be known
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import InputError
from .io import read_transcripts
from .normalize import is_missing, normalize_id
from .schema import Transcript

_UTC = timezone.utc


def recontact_labels(
    transcripts: Any,
    window_days: float = 7,
    customer_key: str = "customer_id",
    *,
    data_end: datetime | str | None = None,
) -> dict[str, bool | None]:
    """{transcript id: whether the same customer opened another conversation within
    `window_days` after this one ended}, in input order.

    A conversation ends at `metadata["ended_at"]` (the readers fill it from the last turn
    timestamp; `started_at` when only that is known) and the next one starts at its
    `started_at` (`ended_at` when only that is known). A recontact starts strictly after the
    end (one starting at the same instant, or before, is a parallel or transferred
    conversation, not a return) and at most `window_days` after it (inclusive). Times are
    ISO 8601; one without a zone counts as UTC, so mixed zones compare correctly.

    The label is None where it cannot be known, so that training and evaluation skip it
    rather than learn "never came back" from missing data:
      - no customer id (`metadata[customer_key]`) or no time;
      - right-censoring: no recontact was seen and the window runs past the end of the logs
        (`data_end`, by default the last timestamp anywhere in the data), so a recontact may
        lie beyond the export. Conversations in the last `window_days` of an export are
        therefore mostly None, not False: drop them, don't count them as negatives;
      - the customer has a conversation with no time: it may have fallen in the window.
    A positive is never censored: a recontact seen is a recontact.

    Args:
        transcripts: Transcripts, or anything `qualaudit.io.read_transcripts` reads (a path,
            a DataFrame, dicts); bad transcripts raise their `InputError`.
        window_days: the window in days (> 0; fractions allowed).
        customer_key: the metadata key holding the customer id (ids compare as text, so
            12 and "12" are one customer).
        data_end: the end of the period the logs cover, when known to be later than the
            last timestamp (an export date).

    Raises:
        InputError: a time that is not ISO 8601 (naming the transcript and
            `metadata.<field>`), or a conversation that starts after it ends.
    """
    if isinstance(window_days, bool) or not isinstance(window_days, (int, float)) \
            or not math.isfinite(window_days) or window_days <= 0:
        raise ValueError(f"window_days: expected a positive number of days, found {window_days!r}")
    window = timedelta(days=window_days)
    if isinstance(transcripts, Transcript):
        transcripts = [transcripts]
    rows: list[tuple[str, str | None, datetime | None, datetime | None]] = []
    for t in read_transcripts(transcripts):
        start, end = _times(t)
        rows.append((t.id, normalize_id(t.metadata.get(customer_key)), start, end))

    horizon = _parse(data_end, "data_end") if isinstance(data_end, str) else _aware(data_end)
    known = [x for _, _, s, e in rows for x in (s, e) if x is not None]
    if known:
        horizon = max(known + ([horizon] if horizon is not None else []))

    starts: dict[str, list[datetime]] = {}
    untimed: set[str] = set()
    for _, customer, start, _ in rows:
        if customer is None:
            continue
        if start is None:
            untimed.add(customer)
        else:
            starts.setdefault(customer, []).append(start)
    for times in starts.values():
        times.sort()

    labels: dict[str, bool | None] = {}
    for tid, customer, _, end in rows:
        if customer is None or end is None:
            labels[tid] = None
            continue
        times = starts[customer]
        after = bisect.bisect_right(times, end)  # the first start strictly after the end
        if after < len(times) and times[after] - end <= window:
            labels[tid] = True
        elif customer in untimed or end + window > horizon:
            labels[tid] = None
        else:
            labels[tid] = False
    return labels


def _times(t: Transcript) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a conversation, each falling back on the other when only one is known."""
    meta: Mapping[str, Any] = t.metadata
    where = {"source": t.source, "line": t.line, "transcript_id": t.id}
    start = None if is_missing(meta.get("started_at")) else _parse(meta["started_at"], "metadata.started_at", where)
    end = None if is_missing(meta.get("ended_at")) else _parse(meta["ended_at"], "metadata.ended_at", where)
    if start is not None and end is not None and start > end:
        raise InputError(f"the conversation starts ({meta['started_at']}) after it ends "
                         f"({meta['ended_at']})", field="metadata.started_at", part="metadata",
                         hint="Fix or drop one of started_at / ended_at", **where)
    return start or end, end or start


def _parse(value: Any, field: str, where: Mapping[str, Any] | None = None) -> datetime:
    """An ISO 8601 time as an aware datetime (no zone: UTC). Numbers are refused: epoch
    seconds and milliseconds cannot be told apart safely."""
    text = value if isinstance(value, str) else None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (AttributeError, ValueError):
        raise InputError(f"expected an ISO 8601 date-time such as 2024-05-01T14:03:00+02:00, "
                         f"found {value!r}", field=field, part="metadata" if where else None,
                         hint="Convert epoch numbers or local formats to ISO 8601 first",
                         **(where or {})) from None
    return _aware(parsed)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"data_end: expected a datetime or ISO 8601 text, found {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=_UTC)

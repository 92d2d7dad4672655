"""Which columns of a long table (one row per turn) hold the id, role, text, order and metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import InputError

_log = logging.getLogger("qualaudit.io")


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
        columns = {"role": self.role, "text": self.text, "timestamp": self.timestamp,
                   "agent_type": self.agent_type}
        return columns.get(part) or part


def resolve_columns(found: list[str], columns: ColumnMap | None, source: str) -> _Columns:
    """Pick each field's column: as mapped, else the one candidate present (see _COLUMN_CANDIDATES).

    Every field is checked before anything is raised, so that one InputError lists each
    required field that is missing or ambiguous and each mapped column that is not there,
    with the columns found and the flag that fixes each; one run of the fix is then enough.
    """
    columns = columns or ColumnMap()
    by_lower: dict[str, list[str]] = {}
    for name in found:
        by_lower.setdefault(name.lower(), []).append(name)
    picked: dict[str, str | None] = {}
    problems: list[tuple[str, str]] = []  # (field, what is wrong)
    for key in ("id", "role", "text", "order", "agent_type"):
        column, problem = _pick_column(key, getattr(columns, key), by_lower, source)
        picked[key] = column
        if problem is not None:
            problems.append((key, problem))
    if problems:
        raise _columns_error(problems, found, source)
    id_, role, text = picked["id"], picked["role"], picked["text"]
    order, agent_type = picked["order"], picked["agent_type"]
    is_time = order is not None and ("time" in order.lower() or "_at" in order.lower())
    timestamps = _present(by_lower, _TIMESTAMP_COLUMNS)
    timestamp = order if is_time else (timestamps[0] if timestamps else None)
    metadata: dict[str, str] = {}
    for column, key in _METADATA_COLUMNS.items():
        if by_lower.get(column) and key not in metadata:
            metadata[key] = by_lower[column][0]
    return _Columns(id_, role, text, order, agent_type, timestamp, metadata)  # type: ignore[arg-type]


_REQUIRED_FIELDS = ("id", "role", "text")


def _flag(key: str) -> str:
    return f"--{key.replace('_', '-')}-column NAME (ColumnMap({key}=NAME))"


def _present(by_lower: Mapping[str, list[str]], candidates: Iterable[str]) -> list[str]:
    """The columns that match `candidates` (case-insensitively), in the candidates' order."""
    return [name for c in candidates for name in by_lower.get(c, [])]


def _pick_column(key: str, explicit: str | None, by_lower: Mapping[str, list[str]],
                 source: str) -> tuple[str | None, str | None]:
    """(the column of field `key` or None, what is wrong with it or None).

    A mapped name matches exactly, else case-insensitively when that is unique. Otherwise
    the candidates present: one is used; of several, an optional field takes the first (and
    logs the choice) while a required field is ambiguous; none is a problem when required.
    """
    if explicit is not None:
        folded = by_lower.get(explicit.lower(), [])
        if explicit in folded:
            return explicit, None
        if len(folded) == 1:
            return folded[0], None
        if folded:
            return None, (f"column {explicit!r} (ColumnMap.{key}) matches {folded}, which "
                          "differ only in case")
        return None, f"column {explicit!r} (ColumnMap.{key}) not found"
    candidates = _COLUMN_CANDIDATES[key]
    if key == "id":  # the bare `id` only when no other id column exists
        hits = _present(by_lower, candidates[:-1]) or _present(by_lower, candidates[-1:])
    else:
        hits = _present(by_lower, candidates)
    required = key in _REQUIRED_FIELDS
    if len(hits) > 1 and not required:
        _log.info("%s: using %r as the %s column; also found %s (pass %s to choose)",
                  source, hits[0], key, hits[1:], _flag(key))
    if len(hits) == 1 or (hits and not required):
        return hits[0], None
    if hits:
        return None, f"ambiguous {key} column: {hits} could each be it"
    if required:
        return None, f"no {key} column; expected one of {list(candidates)} (any case)"
    return None, None


def _columns_error(problems: list[tuple[str, str]], found: list[str], source: str) -> InputError:
    """One error for every field whose column cannot be told, with the flags that fix them."""
    listed = "; ".join(problem for _, problem in problems)
    count = f"{len(problems)} columns cannot be told: " if len(problems) > 1 else ""
    flags = ", ".join(_flag(key) for key, _ in problems)
    return InputError(f"{count}{listed}; columns found: {found}", source=source,
                      hint=f"Pass {flags} with the column{'s' if len(problems) > 1 else ''} "
                           "to use")

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


def _resolve_columns(found: list[str], columns: ColumnMap | None, source: str) -> _Columns:
    """Pick each field's column: as mapped, else the one candidate present (see _COLUMN_CANDIDATES)."""
    columns = columns or ColumnMap()
    by_lower: dict[str, list[str]] = {}
    for name in found:
        by_lower.setdefault(name.lower(), []).append(name)

    def present(candidates: Iterable[str]) -> list[str]:
        return [name for c in candidates for name in by_lower.get(c, [])]

    def pick(key: str, required: bool) -> str | None:
        flag = f"--{key.replace('_', '-')}-column NAME (ColumnMap({key}=NAME))"
        explicit = getattr(columns, key)
        if explicit is not None:
            folded = by_lower.get(explicit.lower(), [])
            if explicit in found or len(folded) == 1:
                return explicit if explicit in found else folded[0]
            raise InputError(f"column {explicit!r} (ColumnMap.{key}) not found; columns found: "
                             f"{found}", source=source, hint=f"Pass {flag} with one of these")
        candidates = _COLUMN_CANDIDATES[key]
        if key == "id":  # the bare `id` only when no other id column exists
            hits = present(candidates[:-1]) or present(candidates[-1:])
        else:
            hits = present(candidates)
        if len(hits) > 1 and not required:
            _log.info("%s: using %r as the %s column; also found %s (pass %s to choose)",
                      source, hits[0], key, hits[1:], flag)
        if len(hits) == 1 or (hits and not required):
            return hits[0]
        if hits:
            raise InputError(f"ambiguous {key} column, columns found: {hits}", source=source,
                             hint=f"Pass {flag} to choose one")
        if not required:
            return None
        raise InputError(f"no {key} column; expected one of {list(candidates)} (any case), "
                         f"columns found: {found}", source=source, hint=f"Pass {flag}")

    id_, role, text = pick("id", True), pick("role", True), pick("text", True)
    order, agent_type = pick("order", False), pick("agent_type", False)
    is_time = order is not None and ("time" in order.lower() or "_at" in order.lower())
    timestamps = present(_TIMESTAMP_COLUMNS)
    timestamp = order if is_time else (timestamps[0] if timestamps else None)
    metadata: dict[str, str] = {}
    for column, key in _METADATA_COLUMNS.items():
        if by_lower.get(column) and key not in metadata:
            metadata[key] = by_lower[column][0]
    return _Columns(id_, role, text, order, agent_type, timestamp, metadata)  # type: ignore[arg-type]

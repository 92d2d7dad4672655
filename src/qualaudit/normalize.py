"""Pure functions from raw export values to normalised turns and transcripts (no torch)."""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, time
from typing import Any

from .errors import InputError
from .schema import AGENT_TYPES, ROLES, Transcript, Turn

# Exact spellings first: "SYSTEM" is the dialogue's agent in exports such as USS, while a
# lower-case "system" is an instruction message (OpenAI style), kept but not scored.
_EXACT_ROLES = {"SYSTEM": "agent", "USER": "customer"}
_ROLES = {
    "customer": "customer", "user": "customer", "client": "customer", "caller": "customer",
    "end_user": "customer", "enduser": "customer", "consumer": "customer",
    "requester": "customer", "seeker": "customer",
    "agent": "agent", "assistant": "agent", "helpdesk": "agent", "bot": "agent",
    "chatbot": "agent", "support": "agent", "operator": "agent", "representative": "agent",
    "advisor": "agent", "human_agent": "agent", "ai_agent": "agent", "model": "agent",
    "system": "system", "tool": "system", "function": "system", "developer": "system",
}
_AGENT_TYPES = {
    "ai": "ai", "bot": "ai", "chatbot": "ai", "llm": "ai", "virtual_agent": "ai",
    "automated": "ai", "human": "human", "person": "human", "live_agent": "human",
    "mixed": "mixed", "handoff": "mixed", "unknown": "unknown",
}
_MAX_SHOWN = 32
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def parse_role_map(spec: str | Mapping[str, str | Iterable[str]] | None) -> dict[str, str]:
    """Raw role name -> canonical role, from `"customer=visitor,agent=operator"` or a mapping.

    A mapping may give one raw name or several per canonical role:
    `{"customer": ["visitor", "guest"], "agent": "operator"}`.
    """
    if not spec:
        return {}
    if isinstance(spec, str):
        pairs: list[tuple[str, str]] = []
        for item in spec.split(","):
            canonical, sep, raw = item.partition("=")
            if not sep or not raw.strip():
                raise InputError(
                    f"role map entry {item.strip()!r} is not ROLE=NAME",
                    field="role_map",
                    hint="Write it as customer=visitor,agent=operator",
                )
            pairs.append((canonical.strip(), raw.strip()))
    else:
        pairs = [
            (canonical, raw)
            for canonical, raws in spec.items()
            for raw in ([raws] if isinstance(raws, str) else raws)
        ]
    mapping = {}
    for canonical, raw in pairs:
        if canonical not in ROLES:
            raise InputError(
                f"role map target {canonical!r} is not a role; expected one of {', '.join(ROLES)}",
                field="role_map",
            )
        mapping[raw] = canonical
    return mapping


def normalize_role(raw: Any, role_map: Mapping[str, str] | None = None) -> str:
    """Canonical role ("customer", "agent" or "system") of a role name found in an export."""
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(
            f"expected a role name, found {shown(raw)}",
            hint=f"Accepted roles: {', '.join(accepted_roles(role_map))}",
        )
    name = raw.strip()
    if role_map:
        if name in role_map:
            return role_map[name]
        lowered = {k.lower(): v for k, v in role_map.items()}
        if name.lower() in lowered:
            return lowered[name.lower()]
    if name in _EXACT_ROLES:
        return _EXACT_ROLES[name]
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key in _ROLES:
        return _ROLES[key]
    if len(name) > _MAX_SHOWN:  # likely text in the wrong column: never echo text
        raise InputError(
            f"unknown role: {shown(name)}; is the role column right? Accepted roles: "
            f"{', '.join(accepted_roles(role_map))}")
    raise InputError(
        f"unknown role {name!r}; accepted roles: {', '.join(accepted_roles(role_map))}",
        hint=f"Map it with --role-map customer={name} (or agent={name}, system={name})",
    )


def shown(value: Any) -> str:
    """A value for an error message: short values as they are, longer ones only by their size,
    since a label column that holds message text must never put that text in a log."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_SHOWN:
        return f"a {len(text)}-character {type(value).__name__} value (not shown)"
    return repr(value)


def accepted_roles(role_map: Mapping[str, str] | None = None) -> list[str]:
    return sorted(set(_ROLES) | set(_EXACT_ROLES) | set(role_map or {}))


def normalize_agent_type(raw: Any) -> str | None:
    """Canonical agent type, or None when the value is missing."""
    if is_missing(raw):
        return None
    if not isinstance(raw, str):
        raise InputError(f"expected an agent type string, found {shown(raw)}")
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _AGENT_TYPES:
        raise InputError(
            f"unknown agent type {shown(raw)}; expected one of {', '.join(AGENT_TYPES)}",
            hint="Synonyms accepted: " + ", ".join(sorted(_AGENT_TYPES)),
        )
    return _AGENT_TYPES[key]


def clean_text(text: str) -> str:
    """Unicode NFC, no invisible or control characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def is_missing(value: Any) -> bool:
    """None, NaN, NaT, pandas NA or a blank string: an empty value in any of the input formats."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return value != value
    return type(value).__name__ in ("NaTType", "NAType")


def normalize_id(value: Any) -> str | None:
    """A transcript id as text (`12.0` -> "12", surrounding spaces removed), None when missing.

    Readers use it to group rows and find duplicates before validation, so that both agree on
    which ids are the same.
    """
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


UTF8_HINT = "Re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT"


def check_utf8(text: str) -> None:
    """Raise on lone surrogates: what invalid UTF-8 bytes become under `surrogateescape`."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"invalid UTF-8 (or a lone surrogate) at character {exc.start}",
                         hint=UTF8_HINT) from None


def _json_safe(value: Any, name: str) -> Any:
    """`value` as plain JSON data: dates as ISO strings, numpy scalars and arrays as Python
    values, NaN and other missing values as None; anything else is an InputError on `name`."""
    if isinstance(value, str):
        _check_utf8_at(value, name)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value:
            return None
        if value in (math.inf, -math.inf):
            raise InputError(f"expected a finite number, found {value}", field=name,
                             hint="JSON has no infinity: store it as a string or leave it out")
        return float(value)
    if is_missing(value):
        return None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        safe = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise InputError(f"expected text keys, found the key {shown(key)}", field=name)
            if isinstance(key, str):
                _check_utf8_at(key, name)
            safe[str(key)] = _json_safe(item, f"{name}.{key}")
        return safe
    if isinstance(value, (list, tuple)) or (_is_numpy(value) and value.ndim > 0):
        return [_json_safe(item, f"{name}[{i}]") for i, item in enumerate(value)]
    if _is_numpy(value):
        if type(value).__name__ == "datetime64":  # .item() of a nanosecond time is an int
            return None if value != value else str(value)
        if type(value).__name__ != "timedelta64":
            return _json_safe(value.item(), name)
    raise InputError(
        f"expected a JSON value (text, number, boolean, null, list or object), found "
        f"{type(value).__name__}", field=name,
        hint="Convert it to text or a number before reading, or leave it out of the metadata",
    )


def _check_utf8_at(text: str, name: str) -> None:
    try:
        check_utf8(text)
    except InputError as exc:
        raise exc.located(field=name) from None


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "ndim")


def _timestamp(value: Any) -> str | None:
    if is_missing(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def make_transcript(
    transcript_id: Any,
    raw_turns: Iterable[Mapping[str, Any]],
    *,
    agent_type: Any = None,
    metadata: Mapping[str, Any] | None = None,
    role_map: Mapping[str, str] | None = None,
    source: str | None = None,
    line: int | None = None,
    n_input_turns: int | None = None,
) -> Transcript:
    """Validate and normalise one conversation.

    Each raw turn is a mapping with `role`, `text` and optionally `timestamp`, `agent_type`,
    `speaker` (the role name as the export spells it; the raw `role` when absent) and `index`
    (the turn's position in the user's input; one more than the turn before when absent, so
    the position itself when no turn has one; indices must increase strictly).
    Empty or whitespace-only turns are dropped (they keep no index of their own in the
    output, but later turns keep their input index); a conversation with no text at all is
    an error. A transcript-level agent type that is missing is derived from the per-turn ones
    (all AI -> "ai", all human -> "human", both -> "mixed"); one given as "ai" or "human"
    is also the agent type of each agent turn without its own. Metadata values become plain JSON
    data (dates as ISO strings, numpy values as Python ones, NaN as None).

    `n_input_turns` counts the input's turns when some were dropped before this call; the
    count kept is the largest of it, the number of raw turns and the last index + 1.
    An error about one turn carries `turn` and `part` (about the id, the agent type or the
    metadata: `part` alone), so that a reader can point at the user's own line and column.
    A Transcript's own parts passed back in (turns with their `index` and `speaker`,
    `agent_type`, `metadata`, `n_input_turns`) give an equal Transcript.

    Example:
        >>> make_transcript("c1", [{"role": "user", "text": "Hi"}]).turns[0].role
        'customer'
    """
    where: dict[str, Any] = {"source": source, "line": line}
    tid = normalize_id(transcript_id)
    if tid is None:
        raise InputError("missing transcript id", field="id", part="id",
                         hint="Every transcript needs a non-empty id", **where)
    try:
        check_utf8(tid)
    except InputError as exc:
        raise exc.located(field="id", part="id", **where) from None
    where["transcript_id"] = tid

    turns: list[Turn] = []
    n_raw, index = 0, -1
    for i, raw in enumerate(raw_turns):
        n_raw += 1
        try:
            index = _turn_index(raw.get("index"), index)
            turn = _turn(raw, index, role_map)
        except InputError as exc:
            raise exc.located(field=f"turns[{i}].{exc.part}", turn=i, **where) from None
        if turn is not None:
            turns.append(turn)
    if not any(t.role != "system" for t in turns):
        raise InputError(
            "no text at all: no customer or agent turn has any text" if n_raw else "no turns",
            hint="A transcript needs at least one non-empty customer or agent turn", **where,
        )
    if n_input_turns is not None and (isinstance(n_input_turns, bool)
                                      or not isinstance(n_input_turns, numbers.Integral)):
        raise InputError(f"expected n_input_turns to be an integer, found {n_input_turns!r}",
                         field="n_input_turns", part="n_input_turns", **where)
    try:
        conv_type = normalize_agent_type(agent_type)
    except InputError as exc:
        raise exc.located(field="agent_type", part="agent_type", **where) from None
    if conv_type is None:
        per_turn = {t.agent_type for t in turns if t.agent_type is not None}
        conv_type = "mixed" if {"ai", "human"} <= per_turn else (per_turn.pop() if len(per_turn) == 1 else "unknown")
    else:
        turns = _inherit_agent_type(turns, conv_type)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InputError(f"expected metadata to be a mapping, found {type(metadata).__name__}",
                         field="metadata", part="metadata", **where)
    try:
        safe_metadata = _json_safe(metadata or {}, "metadata")
    except InputError as exc:
        raise exc.located(part="metadata", **where) from None
    stamps = [t.timestamp for t in turns if t.timestamp is not None]
    if stamps:  # for cohorts by day or week, unless the input says otherwise
        safe_metadata.setdefault("started_at", stamps[0])
        safe_metadata.setdefault("ended_at", stamps[-1])
    return Transcript(
        id=tid,
        turns=tuple(turns),
        agent_type=conv_type,  # type: ignore[arg-type]
        metadata=safe_metadata,
        n_input_turns=max(int(n_input_turns or 0), n_raw, index + 1),
        source=source,
        line=line,
    )


def _inherit_agent_type(turns: list[Turn], conv_type: str) -> list[Turn]:
    """Agent turns without an agent type of their own take the transcript's, when it names
    one ("ai" or "human"): it says who answered. "mixed" and "unknown" say nothing about a
    given turn, and customer and system turns were not answered by an agent, so they keep None."""
    if conv_type not in ("ai", "human"):
        return turns
    return [replace(t, agent_type=conv_type) if t.role == "agent" and t.agent_type is None else t
            for t in turns]


def _turn_index(value: Any, previous: int) -> int:
    """A raw turn's input index: as given, else one more than the turn before."""
    if value is None:
        return previous + 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= previous:
        raise InputError(f"expected an integer turn index of at least {previous + 1} (indices "
                         f"increase strictly from turn to turn), found {value!r}", part="index")
    return int(value)


def _turn(raw: Mapping[str, Any], index: int, role_map: Mapping[str, str] | None) -> Turn | None:
    """One validated turn, or None when its text is empty. Errors name their `part`."""
    try:
        role = normalize_role(raw.get("role"), role_map)
    except InputError as exc:
        raise exc.located(part="role") from None
    text = raw.get("text")
    if is_missing(text):
        text = ""
    if not isinstance(text, str):
        raise InputError(f"expected text to be a string, found {type(text).__name__}",
                         part="text")
    timestamp = _timestamp(raw.get("timestamp"))
    try:
        check_utf8(text)
    except InputError as exc:
        raise exc.located(part="text") from None
    try:
        check_utf8(timestamp or "")
    except InputError as exc:
        raise exc.located(part="timestamp") from None
    try:
        agent_type = normalize_agent_type(raw.get("agent_type"))
    except InputError as exc:
        raise exc.located(part="agent_type") from None
    text = clean_text(text)
    if not text:
        return None
    speaker = raw.get("speaker")
    return Turn(
        role=role,  # type: ignore[arg-type]
        text=text,
        timestamp=timestamp,
        agent_type=agent_type if role == "agent" else None,  # type: ignore[arg-type]
        speaker=str(raw.get("role") if speaker is None else speaker),
        index=index,
    )

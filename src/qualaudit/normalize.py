"""Pure functions from raw export values to normalised turns and transcripts (no torch)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
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
_MAX_SHOWN_ROLE = 32
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
            f"expected a role name, found {raw!r}",
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
    if len(name) > _MAX_SHOWN_ROLE:  # likely text in the wrong column: never echo text
        raise InputError(
            f"unknown role: a {len(name)}-character value (not shown; is the role column "
            f"right?); accepted roles: {', '.join(accepted_roles(role_map))}")
    raise InputError(
        f"unknown role {name!r}; accepted roles: {', '.join(accepted_roles(role_map))}",
        hint=f"Map it with --role-map customer={name} (or agent={name}, system={name})",
    )


def accepted_roles(role_map: Mapping[str, str] | None = None) -> list[str]:
    return sorted(set(_ROLES) | set(_EXACT_ROLES) | set(role_map or {}))


def normalize_agent_type(raw: Any) -> str | None:
    """Canonical agent type, or None when the value is missing."""
    if raw is None or (isinstance(raw, float) and raw != raw):  # None or NaN
        return None
    if not isinstance(raw, str):
        raise InputError(f"expected an agent type string, found {raw!r}")
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    if not key:
        return None
    if key not in _AGENT_TYPES:
        raise InputError(
            f"unknown agent type {raw!r}; expected one of {', '.join(AGENT_TYPES)}",
            hint="Synonyms accepted: " + ", ".join(sorted(_AGENT_TYPES)),
        )
    return _AGENT_TYPES[key]


def clean_text(text: str) -> str:
    """Unicode NFC, no invisible or control characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _check_utf8(text: str) -> None:
    """Raise on lone surrogates: what invalid UTF-8 bytes become under `surrogateescape`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"invalid UTF-8 (or a lone surrogate) at character {exc.start}",
            hint="Re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
        ) from None


def _timestamp(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
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
    turns_field: str = "turns",
) -> Transcript:
    """Validate and normalise one conversation.

    Each raw turn is a mapping with `role`, `text` and optionally `timestamp`, `agent_type`.
    Empty or whitespace-only turns are dropped (they keep no index of their own in the
    output, but later turns keep their input index); a conversation with no text at all is
    an error. A transcript-level agent type that is missing is derived from the per-turn ones
    (all AI -> "ai", all human -> "human", both -> "mixed").
    """
    if transcript_id is None or (isinstance(transcript_id, float) and transcript_id != transcript_id):
        raise InputError("missing transcript id", source=source, line=line, field="id",
                         hint="Every transcript needs a non-empty id")
    if isinstance(transcript_id, float) and transcript_id.is_integer():
        transcript_id = int(transcript_id)
    tid = str(transcript_id).strip()
    if not tid:
        raise InputError("empty transcript id", source=source, line=line, field="id")
    where = {"source": source, "line": line, "transcript_id": tid}

    turns: list[Turn] = []
    n_input = 0
    for i, raw in enumerate(raw_turns):
        n_input += 1
        field_prefix = f"{turns_field}[{i}]"
        try:
            role = normalize_role(raw.get("role"), role_map)
        except InputError as exc:
            raise exc.located(field=f"{field_prefix}.role", **where) from None
        text = raw.get("text")
        if text is None or (isinstance(text, float) and text != text):
            text = ""
        if not isinstance(text, str):
            raise InputError(f"expected text to be a string, found {type(text).__name__}",
                             field=f"{field_prefix}.text", **where)
        try:
            _check_utf8(text)
            turn_agent_type = normalize_agent_type(raw.get("agent_type"))
        except InputError as exc:
            raise exc.located(field=f"{field_prefix}", **where) from None
        text = clean_text(text)
        if not text:
            continue
        turns.append(Turn(
            role=role,  # type: ignore[arg-type]
            text=text,
            timestamp=_timestamp(raw.get("timestamp")),
            agent_type=turn_agent_type if role == "agent" else None,  # type: ignore[arg-type]
            speaker=str(raw.get("role")),
            index=i,
        ))
    if not any(t.role != "system" for t in turns):
        raise InputError(
            "no text at all: every customer and agent turn is empty" if n_input else "no turns",
            hint="A transcript needs at least one non-empty customer or agent turn",
            **where,
        )
    try:
        conv_type = normalize_agent_type(agent_type)
    except InputError as exc:
        raise exc.located(field="agent_type", **where) from None
    if conv_type is None:
        per_turn = {t.agent_type for t in turns if t.agent_type is not None}
        conv_type = "mixed" if {"ai", "human"} <= per_turn else (per_turn.pop() if len(per_turn) == 1 else "unknown")
    return Transcript(
        id=tid,
        turns=tuple(turns),
        agent_type=conv_type,  # type: ignore[arg-type]
        metadata=dict(metadata or {}),
        n_input_turns=n_input,
        source=source,
        line=line,
    )

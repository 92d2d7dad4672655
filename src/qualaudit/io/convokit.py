"""ConvoKit corpora: a directory (or its utterances.jsonl) -> one record per conversation."""

from __future__ import annotations

import heapq
import json
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import is_missing, normalize_id
from .jsonl import json_line
from .records import ReadProgress, _Raw, _Stream
from .values import _first_value, _kind, _sort_keys

_CONVERSATION_KEYS = ("conversation_id", "root")  # a ConvoKit utterance's conversation


def _convokit_stream(path: Path, progress: ReadProgress) -> _Stream:
    directory = path if path.is_dir() else path.parent
    utterances = directory / "utterances.jsonl" if path.is_dir() else path
    if not utterances.is_file():
        raise InputError("ConvoKit corpus without utterances.jsonl", source=str(path),
                         hint="Pass the corpus directory or its utterances.jsonl")
    source = str(utterances)
    progress.bytes_read, progress.total_bytes = 0, utterances.stat().st_size
    records = _convokit_records(utterances, _speaker_roles(directory / "speakers.json"), source,
                                progress)
    return _Stream(records, source, "line", None)


def _speaker_roles(path: Path) -> dict[str, Any]:
    """Speaker id -> role (meta "role" or "type") from speakers.json, a small file read whole."""
    if not path.is_file():
        return {}
    try:
        speakers = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read speakers.json: {exc}", source=str(path),
                         hint="Fix or remove speakers.json (roles then come from utterance "
                              "meta or speaker ids)") from None
    if not isinstance(speakers, dict):
        raise InputError(f"expected an object of speakers by id, found {_kind(speakers)}",
                         source=str(path))
    roles = {}
    for speaker_id, speaker in speakers.items():
        meta = speaker.get("meta") if isinstance(speaker, dict) else None
        role = meta.get("role", meta.get("type")) if isinstance(meta, dict) else None
        if role is not None:
            roles[speaker_id] = role
    return roles


def _convokit_records(path: Path, speaker_roles: Mapping[str, Any], source: str,
                      progress: ReadProgress) -> Iterator[_Raw | InputError]:
    """One record per conversation, in order of first appearance; its utterances may be
    anywhere in the file. A first pass keeps only line numbers and byte offsets per
    conversation (never text), a second pass reads each conversation's lines back.

    A line that is not valid JSON, or names no conversation, is an error of its own; a line
    of a known conversation that cannot be read (invalid UTF-8) rejects that conversation.
    `progress` counts the bytes of the lines read back, and the whole file at the end.
    """
    conversations = _utterance_positions(path, source)
    with path.open("rb") as handle:
        for key, positions in conversations.items():
            utterances, error = [], None
            for line, offset in zip(positions[::2], positions[1::2]):
                handle.seek(offset)
                data = handle.readline()
                progress.bytes_read += len(data)
                item = json_line(data, line, source, _CONVERSATION_KEYS)
                if isinstance(item, InputError):
                    error = error or item
                elif item is not None:
                    utterances.append(item)
            if isinstance(key, int):  # the line number of a line without a conversation
                yield error or InputError("expected an utterance object with a conversation_id",
                                          source=source, line=key, field="conversation_id")
            elif error is not None:
                yield error.located(transcript_id=key)
            else:
                yield _conversation_record(key, utterances, speaker_roles)
    progress.bytes_read = progress.total_bytes or 0  # blank lines, read in the first pass


def _utterance_positions(path: Path, source: str) -> dict[str | int, array]:
    """Conversation id -> [line, byte offset, line, offset, ...] of its utterances, in order of
    first appearance; a line that names no conversation is keyed by its own line number."""
    positions: dict[str | int, array] = {}
    offset = 0
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            item = json_line(data, number, source, _CONVERSATION_KEYS)
            if item is not None:
                key = _conversation_of(item)
                positions.setdefault(number if key is None else key, array("q")).extend(
                    (number, offset))
            offset += len(data)
    return positions


def _conversation_of(item: tuple[int, Any] | InputError) -> str | None:
    if isinstance(item, InputError):
        return item.transcript_id
    obj = item[1]
    return normalize_id(_first_value(obj, _CONVERSATION_KEYS)) if isinstance(obj, dict) else None


def _conversation_record(key: str, utterances: list[tuple[int, Any]],
                         speaker_roles: Mapping[str, Any]) -> _Raw:
    run = _conversation_order(utterances)
    turns, role_fields = [], []
    for _, obj in run:
        meta = obj["meta"] if isinstance(obj.get("meta"), dict) else {}
        speaker = obj.get("speaker", obj.get("user"))
        if "role" in meta:
            role, role_field = meta["role"], "meta.role"
        elif isinstance(speaker, str) and speaker in speaker_roles:
            role, role_field = speaker_roles[speaker], "speaker"
        else:
            role, role_field = speaker, "speaker"
        role_fields.append(role_field)
        turns.append({"role": role, "text": obj.get("text"), "timestamp": obj.get("timestamp"),
                      "agent_type": meta.get("agent_type")})

    def locate(i: int, part: str) -> tuple[int, str]:
        return run[i][0], {"role": role_fields[i], "agent_type": "meta.agent_type"}.get(part, part)

    return _Raw(id=key, line=utterances[0][0], turns=turns, locate=locate,
                id_field="conversation_id")


def _conversation_order(utterances: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """By timestamp when every utterance has one (ties in file order), else in reply order."""
    stamps = [obj.get("timestamp") for _, obj in utterances]
    if any(is_missing(stamp) for stamp in stamps):
        return _reply_order(utterances)
    keys = _sort_keys(stamps)
    return [utterances[i] for i in sorted(range(len(utterances)), key=keys.__getitem__)]


def _reply_order(utterances: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Each utterance after the one it replies to (`reply_to`), and otherwise in file order:
    of the utterances whose parent is placed, the earliest in the file goes next. Utterances
    caught in a reply cycle go last, in file order."""
    first_of: dict[str | None, int] = {}
    for i, (_, obj) in enumerate(utterances):
        first_of.setdefault(normalize_id(obj.get("id")), i)
    first_of.pop(None, None)
    replies: dict[int, list[int]] = {}
    ready = []
    for i, (_, obj) in enumerate(utterances):
        parent = first_of.get(normalize_id(obj.get("reply_to")))
        if parent is None or parent == i:
            ready.append(i)
        else:
            replies.setdefault(parent, []).append(i)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for reply in replies.get(i, ()):
            heapq.heappush(ready, reply)
    placed = set(order)
    order += [i for i in range(len(utterances)) if i not in placed]
    return [utterances[i] for i in order]

"""One transcript per object: JSONL lines, dicts, rows with a messages/turns column."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import is_missing, normalize_id
from .jsonl import json_line
from .records import ReadProgress, _Raw
from .values import _as_list, _first_key, _is_scalar, _kind

# One-transcript-per-object shapes (JSONL lines, dicts, rows with a messages/turns column).
# Here `id` comes first: the object is the transcript, so its own id is the transcript id.
_OBJECT_ID_KEYS = ("id", "conversation_id", "ticket_id", "dialogue_id")
_TURN_LISTS = ("messages", "turns")
_ROLE_KEYS = ("role", "speaker", "sender")
_TEXT_KEYS = ("text", "content", "utterance", "message")
_TEXT_PART_TYPES = ("text", "input_text", "output_text")


# Leading bytes of files that are not text, with what to do about each. {name} is the file's
# name and {suffix} its extension, so that a hint can be copied as it is.
_BINARY_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data",
     "Decompress it first: gunzip -c {name} > transcripts{suffix}"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one too)",
     "Extract it (unzip {name}) and pass the file inside; export a workbook as CSV"),
    (b"PAR1", "a Parquet file",
     "Pass --format parquet (format='parquet'), or rename it to end in .parquet"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "Pass the transcript file instead"),
    (b"\xff\xd8\xff", "a JPEG image", "Pass the transcript file instead"),
    (b"%PDF-", "a PDF document", "Export the transcripts as JSONL, CSV or Parquet"),
    (b"\xfd7zXZ\x00", "xz-compressed data",
     "Decompress it first: xz -dc {name} > transcripts{suffix}"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data",
     "Decompress it first: zstd -dc {name} > transcripts{suffix}"),
    (b"BZh", "bzip2-compressed data",
     "Decompress it first: bunzip2 -c {name} > transcripts{suffix}"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's begin the same way
_BINARY_SHARE = 0.1  # the share of control or invalid bytes above which a block is not text


def _reject_binary(path: Path, fmt: str) -> None:
    """A file that is not text (compressed, an archive, an image, UTF-16) would give one
    "invalid UTF-8" error per line and a misleading hint; raise one error that says what it is.

    Known magic numbers and UTF-16/32 byte order marks are named. Otherwise the first block is
    binary when it holds a NUL byte and more than 10% of its bytes are control bytes or not
    UTF-8: a text file with a stray bad byte still only rejects the transcript holding it.
    """
    with path.open("rb") as handle:
        block = handle.read(8192)
    expected = f"expected a {fmt.upper()} text file (UTF-8)"
    fill = {"name": path.name, "suffix": path.suffix}
    bom_free = block.removeprefix(b"\xef\xbb\xbf")
    for magic, kind, hint in _BINARY_MAGIC:
        if bom_free.startswith(magic) and (magic != b"BZh" or bom_free[3:4].isdigit()):
            raise InputError(f"{expected}, found {kind}", source=str(path),
                             hint=hint.format(**fill))
    if block.startswith(_UTF16_BOMS):
        raise InputError(f"{expected}, found UTF-16 or UTF-32 text (a byte order mark "
                         f"0x{block[:2].hex()})", source=str(path),
                         hint=f"Re-encode it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8 {path.name} "
                              f"> transcripts{path.suffix}")
    if b"\x00" in block and _non_text_share(block) > _BINARY_SHARE:
        raise InputError(f"{expected}, found binary data (NUL and other control bytes in its "
                         "first 8 KB); it is not a text file", source=str(path),
                         hint="Check that this is the transcript file; a compressed or "
                              "exported-as-binary file must be decompressed or exported again")


def _non_text_share(block: bytes) -> float:
    """The share of `block`'s characters that are control characters (other than whitespace
    and escape) or bytes that are not UTF-8."""
    text = block.decode("utf-8", errors="surrogateescape")
    bad = sum(1 for c in text
              if "\udc80" <= c <= "\udcff" or (c < " " and c not in "\t\n\r\f\v\b\x1b"))
    return bad / max(len(text), 1)


def _reject_json_array(path: Path) -> None:
    """A whole-file JSON array would fail on every line; say what it is instead."""
    with path.open("rb") as handle:
        start = handle.read(1024).removeprefix(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"["):
        raise InputError(
            "expected JSON Lines (one transcript object per line), found a JSON array",
            source=str(path), hint=f"Convert it with: jq -c '.[]' {path.name} > transcripts.jsonl",
        )


def _jsonl_records(path: Path, source: str,
                   progress: ReadProgress) -> Iterator[_Raw | InputError]:
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            progress.bytes_read += len(data)
            item = json_line(data, number, source, _OBJECT_ID_KEYS)
            if isinstance(item, InputError):
                yield item
            elif item is not None:
                yield _object_record(item[1], number, source)


def _object_record(obj: Any, line: int, source: str) -> _Raw | InputError:
    """A transcript object (`{"id", "messages"}` or `{"id", "turns"}`) as raw parts."""
    where = {"source": source, "line": line}
    if not isinstance(obj, Mapping):
        return InputError(
            f"expected a transcript object with an id and messages or turns, found {_kind(obj)}",
            hint='Each transcript looks like {"id": "c1", "messages": [{"role": ..., '
                 '"content": ...}]}', **where,
        )
    id_key = next((k for k in _OBJECT_ID_KEYS if k in obj), None)
    if id_key is None:
        return InputError(f"no transcript id; expected one of the keys {', '.join(_OBJECT_ID_KEYS)}, "
                          f"found keys {sorted(map(str, obj))}", field="id", **where)
    tid = obj[id_key]
    if isinstance(tid, bool) or not (tid is None or isinstance(tid, (str, numbers.Real))):
        return InputError(f"expected the id to be a string or a number, found {_kind(tid)}",
                          field=id_key, **where)
    try:
        return _parse_object(obj, id_key, line)
    except InputError as exc:
        return exc.located(transcript_id=normalize_id(tid), **where)


def _parse_object(obj: Mapping[str, Any], id_key: str, line: int) -> _Raw:
    present = [k for k in _TURN_LISTS if k in obj]
    if len(present) != 1:
        found = "both" if present else f"neither (keys found: {sorted(map(str, obj))})"
        raise InputError(f"expected a 'messages' or a 'turns' list, found {found}",
                         field="messages")
    list_key = present[0]
    raw_turns = _as_list(obj[list_key])
    if raw_turns is None:
        raise InputError(f"expected a list of turns, found {_kind(obj[list_key])}", field=list_key)
    turns = []
    for i, turn in enumerate(raw_turns):
        if not isinstance(turn, Mapping):
            raise InputError(f"expected a turn object with a role and a text, found {_kind(turn)}",
                             field=f"{list_key}[{i}]")
        text_key = _first_key(turn, _TEXT_KEYS)
        text = turn.get(text_key) if text_key else None
        parts = _as_list(text)
        if parts is not None:
            text = _joined_parts(parts, f"{list_key}[{i}].{text_key}")
        role_key = _first_key(turn, _ROLE_KEYS)
        turns.append({"role": turn.get(role_key) if role_key else None, "text": text,
                      "timestamp": turn.get("timestamp"), "agent_type": turn.get("agent_type")})
    reserved = {id_key, list_key, "agent_type", "metadata"}
    metadata = {k: v for k, v in obj.items() if k not in reserved and _is_scalar(v)}
    extra = obj.get("metadata")
    if is_missing(extra):
        extra = {}
    if not isinstance(extra, Mapping):
        raise InputError(f"expected metadata to be an object, found {_kind(extra)}",
                         field="metadata")
    metadata.update(extra)  # the explicit metadata object wins over top-level fields

    def locate(i: int, part: str) -> tuple[int, str]:
        keys = {"role": _first_key(raw_turns[i], _ROLE_KEYS) or "role",
                "text": _first_key(raw_turns[i], _TEXT_KEYS) or "text"}
        return line, f"{list_key}[{i}].{keys.get(part, part)}"

    return _Raw(id=obj[id_key], line=line, turns=turns, locate=locate, id_field=id_key,
                agent_type=obj.get("agent_type"), metadata=metadata)


def _joined_parts(parts: list[Any], path: str) -> str:
    """OpenAI content parts -> one text: text parts joined by newlines, other parts ignored."""
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise InputError(f'expected a content part like {{"type": "text", "text": ...}}, '
                             f"found {_kind(part)}", field=f"{path}[{j}]")
        if part.get("type", "text") not in _TEXT_PART_TYPES:
            continue
        if not isinstance(part.get("text"), str):
            raise InputError(f"expected the text of a text part, found {_kind(part.get('text'))}",
                             field=f"{path}[{j}].text")
        texts.append(part["text"])
    return "\n".join(texts)

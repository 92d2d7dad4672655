"""Source dispatch: the reader a path, DataFrame, Dataset, Transcript, dict or iterable goes to."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..normalize import normalize_id
from ..schema import Transcript, Turn
from .columns import ColumnMap
from .convokit import _convokit_stream
from .formats import SUFFIX_FORMATS, TRANSCRIPT_FORMATS
from .objects import _jsonl_records, _object_record, _reject_binary, _reject_json_array
from .records import _OBJECT_DUPLICATE_HINT, ReadProgress, _Raw, _Stream
from .tables import _csv_stream, _dataset_rows, _frame_rows, _parquet_stream, _rows_stream


def _open(source: Any, fmt: str, columns: ColumnMap | None, progress: ReadProgress) -> _Stream:
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), fmt, columns, progress)
    name = f"<{type(source).__name__}>"
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(source, pandas.DataFrame):
        names = [c for c in source.columns if isinstance(c, str)]
        return _rows_stream(names, partial(_frame_rows, source), columns, name)
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        raise InputError(f"expected one split of a DatasetDict, found splits {list(source)}",
                         hint="Pass one split, e.g. dataset['train']")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return _rows_stream(source.column_names, partial(_dataset_rows, source), columns, name)
    if isinstance(source, (Transcript, Mapping)):
        source = [source]
    if isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)):
        return _Stream(_item_records(source, name), name, "item", _OBJECT_DUPLICATE_HINT)
    raise InputError(
        f"cannot read transcripts from a {type(source).__name__}; expected a file path, a pandas "
        "DataFrame, a datasets.Dataset, a Transcript, a dict or an iterable of Transcripts/dicts"
    )


def _open_path(path: Path, fmt: str, columns: ColumnMap | None,
               progress: ReadProgress) -> _Stream:
    source = str(path)
    if not path.exists():
        raise InputError("file not found", source=source,
                         hint="Check the path (a relative path starts at the current directory)")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt == "convokit":
        return _convokit_stream(path, progress)
    if path.is_dir():
        raise InputError(f"expected a {fmt} file, found a directory", source=source)
    progress.bytes_read, progress.total_bytes = 0, path.stat().st_size
    if fmt in ("jsonl", "csv", "tsv"):
        _reject_binary(path, fmt)
    if fmt == "jsonl":
        _reject_json_array(path)
        return _Stream(_jsonl_records(path, source, progress), source, "line", _OBJECT_DUPLICATE_HINT)
    if fmt in ("csv", "tsv"):
        return _csv_stream(path, "\t" if fmt == "tsv" else ",", columns, progress)
    return _parquet_stream(path, columns, progress)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "utterances.jsonl").is_file():
            return "convokit"
        raise InputError("directory without utterances.jsonl; expected a transcript file or a "
                         "ConvoKit corpus directory", source=str(path))
    if path.name == "utterances.jsonl":
        return "convokit"
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the format from the extension {path.suffix!r}; expected one of "
            + ", ".join(SUFFIX_FORMATS),
            source=str(path),
            hint=f"Pass --format (format=) with one of {', '.join(TRANSCRIPT_FORMATS)}",
        )
    return fmt


def _item_records(items: Iterable[Any], source: str) -> Iterator[_Raw | InputError]:
    for number, item in enumerate(items, 1):
        if isinstance(item, Transcript):
            yield _transcript_record(item, number, source)
        else:
            yield _object_record(item, number, source)


def _transcript_record(transcript: Transcript, number: int, source: str) -> _Raw | InputError:
    """A Transcript passed in, as raw parts for make_transcript to validate again.

    Turn indices are kept when they are distinct; Turns built without one all have index 0,
    and then their positions are used instead.
    """
    for i, turn in enumerate(transcript.turns):
        if not isinstance(turn, Turn):
            return InputError(f"expected a Turn, found {type(turn).__name__}", source=source,
                              line=number, transcript_id=normalize_id(transcript.id),
                              field=f"turns[{i}]", turn=i)
    indices = [turn.index for turn in transcript.turns]
    distinct = len(set(indices)) == len(indices)
    turns = [{"role": turn.role, "text": turn.text, "timestamp": turn.timestamp,
              "agent_type": turn.agent_type, "speaker": turn.speaker,
              **({"index": turn.index} if distinct else {})} for turn in transcript.turns]
    origin = (transcript.source, transcript.line) if transcript.source is not None else None
    return _Raw(id=transcript.id, line=number, turns=turns, id_field="id",
                agent_type=transcript.agent_type, metadata=transcript.metadata,
                n_input_turns=transcript.n_input_turns, origin=origin,
                locate=lambda i, part: (number, f"turns[{i}].{part}"))

"""Every file format, both directions: transcript readers (JSONL, CSV/TSV, Parquet, ConvoKit,
pandas, datasets -> `Transcript`s), score writers and readers (`writers`, `scores`), label
files (`labels`); `formats` maps extensions to formats for all of them. No torch here.

Every reader streams (a line, a chunk or a batch at a time) and only reshapes raw records
into what `normalize.make_transcript` validates. A bad transcript becomes an `InputError`
value, located by file, line or row, id and field, so one bad record never stops a run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from ..errors import InputError
from ..normalize import parse_role_map
from ..schema import Transcript
from .columns import ColumnMap
from .formats import TRANSCRIPT_FORMATS
from .labels import read_labels
from .records import ReadProgress, _checked, _valid_only
from .scores import read_scores
from .sources import _open

__all__ = ["TRANSCRIPT_FORMATS", "ColumnMap", "ReadProgress", "iter_records", "read_labels",
           "read_scores", "read_transcripts"]


def iter_records(
    source: Any,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | Mapping[str, Any] | None = None,
    progress: ReadProgress | None = None,
) -> Iterator[Transcript | InputError]:
    """Each transcript of `source`, validated, or an `InputError` value for each bad one.

    `source` is a path (.jsonl/.json, .csv/.tsv, .parquet/.pq, or a ConvoKit corpus directory
    or its utterances.jsonl), a pandas DataFrame or datasets.Dataset (a long table, or one
    transcript per row when it has a `messages`/`turns` column), a Transcript, a dict, or an
    iterable of Transcripts and dicts. `format` overrides the file extension; `columns` names
    long-table columns (other sources ignore it). Transcripts passed in are validated like any
    other input (roles normalised, empty turns dropped); one made by this library comes back
    equal, and keeps its `source` and `line`.

    Errors that make the whole source unreadable (missing file, unknown format, missing or
    ambiguous columns, bad role map) are raised here, before the first record. Every other
    problem is yielded as an `InputError` and reading goes on; a CSV/TSV row with the wrong
    number of fields (or that cannot be parsed) rejects the transcript it belongs to.

    `line` is the 1-based line of a JSONL or utterances.jsonl file, the 1-based data row of a
    table (the header and blank lines are not counted) or the 1-based item of an iterable. An
    id seen before in the same source is rejected, never merged: in a streamed table (CSV,
    Parquet, Dataset) the rows of one conversation must be contiguous; a DataFrame is grouped
    by id, and a ConvoKit corpus by conversation_id (its utterances may come in any order:
    within a conversation they are ordered by timestamp when every utterance has one, else
    each after the utterance it replies to, ties and the rest in file order).
    When several optional columns could serve (say `seq` and `timestamp` for the order), the
    first in priority order is used and the choice is logged at INFO on "qualaudit.io".
    A `ReadProgress` passed as `progress` is filled in as the file is read (see there).

    Example:
        >>> for record in iter_records("chats.csv", role_map="customer=visitor"):
        ...     print(record.id if isinstance(record, Transcript) else record)
    """
    if format != "auto" and format not in TRANSCRIPT_FORMATS:
        raise InputError(f"unknown format {format!r}; expected auto or one of "
                         f"{', '.join(TRANSCRIPT_FORMATS)}",
                         field="format")
    roles = parse_role_map(role_map)
    stream = _open(source, format, columns, progress if progress is not None else ReadProgress())
    return _checked(stream, roles)


def read_transcripts(
    source: Any,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | Mapping[str, Any] | None = None,
) -> Iterator[Transcript]:
    """The valid transcripts of `source` (see `iter_records`), raising or skipping bad ones.

    With `on_error="skip"` each bad transcript is logged on the "qualaudit.io" logger by
    location and reason only, never with its text.

    Example:
        >>> transcripts = list(read_transcripts("chats.jsonl", on_error="skip"))
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    records = iter_records(source, format=format, columns=columns, role_map=role_map)
    return _valid_only(records, on_error)

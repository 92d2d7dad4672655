"""Score a whole source into an output file: the job behind `qualaudit score`, as a function
that returns what happened, so that other programs can run it without the CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import ColumnMap, iter_records
from .schema import Transcript
from .scorer import Auditor
from .writers import RowWriter

log = logging.getLogger("qualaudit.pipeline")


@dataclass
class RunSummary:
    """What a scoring run read and wrote. `inputs == scored + rejected` always."""

    scored: int = 0
    rejected: int = 0
    turns: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def inputs(self) -> int:
        return self.scored + self.rejected


def score_to_file(
    source: Any,
    output: str | Path | None,
    auditor: Auditor,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | dict | None = None,
    per_turn: bool = False,
    on_reject: Callable[[InputError], None] | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Read `source`, score every valid transcript, write one row each to `output` (JSONL to
    stdout when None) in input order, flushed chunk by chunk.

    A bad transcript is skipped, counted, logged on "qualaudit.pipeline" with its location
    and reason (never its text) and passed to `on_reject`; an unreadable source raises
    InputError before the output is created.
    """
    summary = RunSummary()
    start = time.perf_counter()
    records = iter_records(source, format=format, columns=columns, role_map=role_map)

    def transcripts() -> Iterator[Transcript]:
        for record in records:
            if isinstance(record, InputError):
                log.warning("rejected: %s", record)
                summary.rejected += 1
                if on_reject:
                    on_reject(record)
            else:
                yield record

    turns_before, tokens_before = auditor.stats.turns, auditor.stats.tokens
    with RowWriter(output, per_turn=per_turn) as writer:
        for chunk in auditor.score_transcripts(transcripts()):
            writer.write([result.to_dict(per_turn=per_turn) for result in chunk])
            summary.scored += len(chunk)
            summary.turns = auditor.stats.turns - turns_before
            summary.tokens = auditor.stats.tokens - tokens_before
            summary.seconds = time.perf_counter() - start
            if on_progress:
                on_progress(summary)
    summary.seconds = time.perf_counter() - start
    return summary

"""Score a whole source into an output file: the job behind `qualaudit score`, as a function
that returns what happened, so that other programs can run it without the CLI."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError, QualauditError, RejectedRowError, UsageError
from .io import ColumnMap, ReadProgress, iter_records
from .io.writers import ErrorWriter, ResumeState, RowWriter
from .language import language_rejection
from .redact import redact_row, redact_text
from .schema import ModelInfo, Transcript

if TYPE_CHECKING:
    from .scorer import Auditor

log = logging.getLogger("qualaudit.pipeline")


@dataclass
class RunSummary:
    """What a scoring run read and wrote.

    `read` counts the source's records as they are read (every transcript, valid or not);
    each one is `scored` (a row written now), `resumed` (its id already had a row in the
    output, `resume=True`) or `rejected`: `read == inputs == scored + resumed + rejected`
    when a run ends, which `score_to_file` checks. `truncated` counts scored transcripts with
    a `truncated` entry on their row. `bytes_read` of `total_bytes` is how far the source file
    has been read (see `qualaudit.io.ReadProgress`), for a progress bar; both are None when
    the source is not a file (a DataFrame, a list).
    """

    scored: int = 0
    rejected: int = 0
    turns: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resumed: int = 0
    read: int = 0
    truncated: int = 0
    bytes_read: int | None = None
    total_bytes: int | None = None

    @property
    def inputs(self) -> int:
        return self.scored + self.resumed + self.rejected


def score_to_file(
    source: Any,
    output: str | Path | None,
    auditor: Auditor,
    *,
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: str | dict | None = None,
    per_turn: bool = False,
    resume: bool = False,
    allow_mixed_models: bool = False,
    errors: str | Path | None = None,
    on_error: Literal["skip", "fail"] = "skip",
    redact: bool = False,
    on_reject: Callable[[InputError], None] | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
    languages: Sequence[str] | None = None,
) -> RunSummary:
    """Read `source`, score every valid transcript, write one row each to `output` (JSONL to
    stdout when None) in input order, each chunk flushed and synced to disk.

    A bad transcript is counted, logged on "qualaudit.pipeline" with its location and reason
    (never its text), written to the `errors` JSONL file when one is given and passed to
    `on_reject`; then `on_error="skip"` goes on and `on_error="fail"` stops: the rows before
    it are written, and RejectedRowError is raised. An unreadable source raises InputError
    before the output is created, and so does a source that holds no transcript at all (an
    empty file, blank lines only, a header without rows, an empty table or list): the output
    is then neither created nor truncated, and an existing one (even with `resume=True`) is
    left as it was. A resumed run whose transcripts all have rows already is not empty.

    `resume=True` (JSONL output only) keeps the rows already in `output`, drops a partial last
    line, and scores only the transcripts whose ids have no row yet; an output written by
    another model (name, version or weights) or at another precision is refused (UsageError) unless
    `allow_mixed_models`, as is one written with another `per_turn`. `redact=True` runs every
    row through `qualaudit.redact.redact_row` (the text it echoes: metadata values).
    `languages` (ISO 639-1 codes) rejects, like a bad transcript, each transcript detected in
    another language (see `language_rejection`); without it such rows are scored with a
    `warnings` entry when the model was not trained on their language.

    The output (and errors file) is locked while it is written: a second run on it raises
    OutputError. At the end the counts must add up (`RunSummary`), and a JSONL file must hold
    one line per row; if not, QualauditError is raised.

    Example:
        >>> summary = score_to_file("chats.jsonl", "scores.jsonl", auditor, resume=True,
        ...                         errors="rejected.jsonl")
        >>> summary.scored, summary.resumed, summary.rejected
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', found {on_error!r}")
    summary = RunSummary()
    start = time.perf_counter()
    read = ReadProgress()
    records = _non_empty(iter_records(source, format=format, columns=columns, role_map=role_map,
                                      progress=read), source)
    with RowWriter(output, per_turn=per_turn, resume=resume) as writer:
        done = writer.resumed or ResumeState()
        check_resumable(done, auditor.info, per_turn, allow_mixed_models, output)
        error_writer = ErrorWriter(errors) if errors is not None else None
        stopped: list[InputError] = []

        def transcripts() -> Iterator[Transcript]:
            for record in records:
                summary.read += 1
                if isinstance(record, Transcript) and languages and record.id not in done.ids:
                    record = language_rejection(record, languages) or record
                if isinstance(record, InputError):
                    summary.rejected += 1
                    log.warning("rejected: %s", redact_text(str(record)))
                    if error_writer is not None:
                        error_writer.write(record)
                    if on_reject:
                        on_reject(record)
                    if on_error == "fail":
                        stopped.append(record)
                        return
                elif record.id in done.ids:
                    summary.resumed += 1
                else:
                    yield record

        try:
            turns_before, tokens_before = auditor.stats.turns, auditor.stats.tokens
            for chunk in auditor.score_in_chunks(transcripts()):
                rows = [result.to_dict(per_turn=per_turn) for result in chunk]
                writer.write([redact_row(r) for r in rows] if redact else rows)
                summary.scored += len(chunk)
                summary.truncated += sum(result.truncated is not None for result in chunk)
                summary.turns = auditor.stats.turns - turns_before
                summary.tokens = auditor.stats.tokens - tokens_before
                summary.seconds = time.perf_counter() - start
                _note_bytes(summary, read)
                if on_progress:
                    on_progress(summary)
        finally:
            if error_writer is not None:
                error_writer.close()
        if stopped:
            raise RejectedRowError(stopped[0])
        _check_accounts(summary, writer, done)
    if done.ids and summary.resumed < done.rows:
        log.warning("%s holds %d rows whose ids are not in this input (was it written for "
                    "another input?)", output, done.rows - summary.resumed)
    summary.seconds = time.perf_counter() - start
    _note_bytes(summary, read)
    return summary


def _note_bytes(summary: RunSummary, read: ReadProgress) -> None:
    """How far the source file has been read, on the summary (nothing for other sources)."""
    if read.total_bytes is not None:
        summary.bytes_read, summary.total_bytes = read.bytes_read, read.total_bytes


def _non_empty(records: Iterator[Transcript | InputError],
               source: Any) -> Iterator[Transcript | InputError]:
    """`records` unchanged, or InputError when there is none. The first record is read here,
    before the output is opened, so that an empty source leaves no empty output behind."""
    first = next(records, None)
    if first is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"
        raise InputError(
            "no transcripts found; expected one JSON object per line (JSONL), or a header row and "
            "one row per turn (CSV, TSV, Parquet, a table), found none (an empty file, blank "
            "lines only, or a header without rows)", source=name,
            hint="Check that this is the file you meant to score and that its export finished")
    return itertools.chain([first], records)


def check_resumable(done: ResumeState, info: ModelInfo, per_turn: bool,
                    allow_mixed_models: bool, output: str | Path | None) -> None:
    """Refuse to add rows to an output whose rows another model (`info` is this run's), another
    precision (or another per_turn) wrote."""
    mine = (info.name, info.version, info.weights_sha256, info.precision)
    others = {key: n for key, n in done.models.items() if key != mine}
    if others and not allow_mixed_models:
        (name, version, sha, precision), n = next(iter(others.items()))
        if (name, version, sha) == mine[:3]:
            raise UsageError(
                f"cannot resume {output}: {n} of its {done.rows} rows were scored at precision "
                f"{precision!r}, this run scores at {info.precision!r}; scores of different "
                f"precisions must not be mixed in one file. Resume with --precision {precision}, "
                "write to a new output, or pass --allow-mixed-models to mix them anyway")
        raise UsageError(
            f"cannot resume {output}: {n} of its {done.rows} rows were written by model "
            f"{name!r} version {version!r} (weights {sha[:12]}), not by {info.name!r} version "
            f"{info.version!r} (weights {info.weights_sha256[:12]}); scores of different models "
            "must not be mixed in one file. Resume with the same model, write to a new output, "
            "or pass --allow-mixed-models (allow_mixed_models=True) to mix them anyway")
    if done.per_turn is not None and done.per_turn != per_turn:
        flag = "with" if done.per_turn else "without"
        raise UsageError(f"cannot resume {output}: its rows were written {flag} --per-turn; "
                         f"resume {flag} it too")
    if done.partial_bytes:
        log.warning("%s: dropping a partial last line (%d bytes) left by an interrupted run",
                    output, done.partial_bytes)
    if done.ids:
        log.info("%s: resuming after the %d rows already written", output, done.rows)


def _check_accounts(summary: RunSummary, writer: RowWriter, done: ResumeState) -> None:
    """Every transcript read is scored, resumed or rejected, and the output holds every row."""
    if summary.read != summary.inputs or writer.rows_written != summary.scored:
        raise QualauditError(
            f"the run's counts do not add up: read {summary.read} transcripts, but scored "
            f"{summary.scored} (wrote {writer.rows_written} rows), found {summary.resumed} in "
            f"the output already and rejected {summary.rejected}. This is a bug in qualaudit: "
            "please report it")
    on_disk = writer.rows_on_disk()
    if on_disk is not None and on_disk != done.rows + summary.scored:
        raise QualauditError(
            f"{writer.path} holds {on_disk} rows, but {done.rows} were there before and "
            f"{summary.scored} were written now; was it changed by another program during "
            "the run? Run again with --resume to complete it")

"""`qualaudit score --engine ray`: a folder of part files, written so that a killed job can be
resumed with every id exactly once.

Each write task writes its rows to a hidden temporary file and renames it to
`part-<run>-<task>.<ext>` once it is complete: a part file is either whole or absent. A
retried task (its worker died) writes its part again under the same name. A rerun with
`resume` deletes the temporary files a killed run left, reads the ids of the part files there
are, and skips those ids (marked "resumed"); its own parts get a new run name.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError, OutputError, QualauditError, UsageError
from ...io import ColumnMap
from ...io.formats import SCORE_FORMATS, format_of
from ...io.scores import decoded_row, iter_scores
from ...io.writers import ResumeState, RowWriter
from ...schema import ROW_FIELDS
from .dataset import read_transcripts, score_dataset
from .engine import check_cluster_fits, connect

log = logging.getLogger("qualaudit.ray")

@dataclass
class RaySummary:
    """What a Ray scoring job read and wrote: `read == scored + resumed + rejected`."""

    scored: int = 0
    rejected: int = 0
    resumed: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0  # connecting to (or starting) Ray
    files: list[str] = field(default_factory=list)  # part files written by this run

    @property
    def read(self) -> int:
        return self.scored + self.resumed + self.rejected


def output_folder_format(path: str | Path) -> str:
    """The format of a Ray output folder: the folder name's extension (`scores.parquet/`,
    `scores.pq/`, `scores.csv/`), else JSONL."""
    if not Path(path).suffix:
        return "jsonl"
    try:
        return format_of(path, SCORE_FORMATS, "a Ray output folder (named like its parts)")
    except InputError as exc:
        raise UsageError(f"{exc}; or no extension for JSONL") from None


class PartFiles:
    """The Ray datasink (see `datasink()`): each write task writes its scored rows to one part
    file with `RowWriter`, and returns its counts and the error records of its rejected rows
    (the driver writes those to the errors file)."""

    def __init__(self, directory: Path, fmt: str, per_turn: bool, run: str,
                 rows_per_file: int) -> None:
        self.directory, self.fmt, self.per_turn, self.run = str(directory), fmt, per_turn, run
        self.rows_per_file = rows_per_file
        self.results: list[dict[str, Any]] = []

    def write(self, tables: Any, task: int) -> dict[str, Any]:
        name = f"part-{self.run}-{task:05d}.{self.fmt}"
        final = Path(self.directory) / name
        temporary = Path(self.directory) / f".tmp-{name}"
        result: dict[str, Any] = {"file": None, "scored": 0, "resumed": 0, "errors": []}
        with RowWriter(temporary, per_turn=self.per_turn) as writer:
            for table in tables:
                rows = table.to_pylist()
                scored = [decoded_row({k: r[k] for k in ROW_FIELDS if k in r}, name, 0)
                          for r in rows if r["status"] == "scored"]
                if scored:
                    writer.write(scored)
                result["scored"] += len(scored)
                result["resumed"] += sum(r["status"] == "resumed" for r in rows)
                result["errors"] += [json.loads(r["error"]) for r in rows
                                     if r["status"] == "rejected"]
        if result["scored"]:
            os.replace(temporary, final)
            result["file"] = name
        else:
            temporary.unlink()
        return result


def datasink(parts: PartFiles) -> Any:
    """`parts` as a `ray.data.Datasink`; its results land in `parts.results` on the driver."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    class _Sink(Datasink):
        def get_name(self) -> str:
            return "QualauditScores"

        @property
        def min_rows_per_write(self) -> int:
            return parts.rows_per_file

        def write(self, blocks: Any, ctx: Any) -> dict[str, Any]:
            tables = (BlockAccessor.for_block(b).to_arrow() for b in blocks)
            return parts.write(tables, ctx.task_idx)

        def on_write_complete(self, write_result: Any) -> None:
            parts.results = list(write_result.write_returns)

    return _Sink()


def resume_state(directory: Path) -> ResumeState:
    """What the complete part files of `directory` hold; the temporary files of a killed run
    are deleted (their rows were never complete)."""
    state = ResumeState()
    for stale in directory.glob(".tmp-part-*"):
        log.warning("%s: deleting %s, a part file a stopped run left unfinished", directory,
                    stale.name)
        stale.unlink()
    for part in sorted(directory.glob("part-*")):
        for _, row in iter_scores(part):
            if not state.add(row):
                raise OutputError(f"{part}: a second row for transcript {row['id']!r}; this "
                                  "folder was not written by one qualaudit job")
    return state


def score_files(
    input: str | Path | list[str | Path],
    output: str | Path,
    model: str | Path | None = None,
    *,
    resume: bool = False,
    allow_mixed_models: bool = False,
    errors: str | Path | None = None,
    per_turn: bool = False,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    batch_size: int = 64,
    rows_per_file: int = 10_000,
    address: str | None = None,
    format: str = "auto",
    columns: ColumnMap | None = None,
    role_map: Any = None,
    redact: bool = False,
    languages: Sequence[str] | None = None,
    **auditor_options: Any,
) -> RaySummary:
    """Score transcript files on Ray into the folder `output` (format from its name, see
    `output_folder_format`); rejected transcripts go to the JSONL file `errors` with the fields
    of `--errors`. An existing folder with part files needs `resume=True`, which refuses rows
    of another model or precision unless `allow_mixed_models` (as `qualaudit score --resume`).

    Each write task writes about `rows_per_file` rows (records, rejected ones included) to one
    part file: fewer, larger files, against more work lost when a job is killed. At the end,
    the part files must hold exactly the rows written before plus the rows scored now, else
    QualauditError.
    """
    from ...pipeline import check_resumable
    from ...scorer import Auditor

    summary = RaySummary()
    start = time.perf_counter()
    out = Path(output)
    fmt = output_folder_format(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {str(out)!r} is a file; --engine ray writes a folder of part "
                         "files (give a folder path)")
    if out.is_dir() and any(out.glob("part-*")) and not resume:
        raise UsageError(f"output folder {str(out)!r} already holds part files; pass --resume "
                         "to finish that job, or write to a new folder")
    summary.startup_seconds = connect(address)
    check_cluster_fits(actors, cpus_per_actor, gpus_per_actor)
    records = read_transcripts(input, format=format, columns=columns, role_map=role_map)
    out.mkdir(parents=True, exist_ok=True)
    done = resume_state(out) if resume else ResumeState()
    if done.rows:  # which model and precision would add rows: only a resumed folder asks
        info = Auditor.from_pretrained(model, device="cpu", **_info_options(auditor_options)).info
        check_resumable(done, info, per_turn, allow_mixed_models, out)
    scored = score_dataset(records, model, actors=actors, cpus_per_actor=cpus_per_actor,
                           gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                           per_turn=per_turn, redact=redact, languages=languages,
                           skip_ids=frozenset(done.ids),
                           **auditor_options)
    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    parts = PartFiles(out, fmt, per_turn, run, rows_per_file)
    scored.write_datasink(datasink(parts))
    error_records = [e for r in parts.results for e in r["errors"]]
    if errors is not None:
        with Path(errors).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in error_records)
    summary.scored = sum(r["scored"] for r in parts.results)
    summary.resumed = sum(r["resumed"] for r in parts.results)
    summary.rejected = len(error_records)
    summary.files = sorted(r["file"] for r in parts.results if r["file"])
    on_disk = _rows_in(out)
    if on_disk != done.rows + summary.scored or summary.resumed != done.rows:
        raise QualauditError(
            f"{out} holds {on_disk} rows, but {done.rows} were there before and "
            f"{summary.scored} were scored now ({summary.resumed} found resumed); was it "
            "changed during the run? Run again with --resume to complete it")
    summary.seconds = time.perf_counter() - start
    return summary


def _info_options(options: dict[str, Any]) -> dict[str, Any]:
    """The Auditor options that decide its `info` (model name, weights, precision)."""
    return {k: v for k, v in options.items() if k in ("precision", "quantize")}


def _rows_in(directory: Path) -> int:
    """Rows in the part files of `directory`, counted from the files."""
    total = 0
    for part in directory.glob("part-*"):
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(part).metadata.num_rows
        elif part.suffix == ".jsonl":
            with part.open("rb") as handle:
                total += sum(1 for _ in handle)
        else:
            total += sum(1 for _ in iter_scores(part))
    return total

"""Ray datasets of transcripts in, scored datasets out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._version import __version__
from ...io import ColumnMap
from .actor import ScoreBatches
from .engine import require_ray
from .records import TranscriptFiles, datasource, first_wins, transcript_files, user_records


def read_transcripts(paths: str | Path | list[str | Path], *, format: str = "auto",
                     columns: ColumnMap | None = None, role_map: Any = None) -> Any:
    """A `ray.data.Dataset` of record rows (see `records`) for files, folders of files or a
    ConvoKit corpus: one read task per file, read by `qualaudit.io` as `qualaudit score` reads
    it. Errors that make a file unreadable as a whole are raised here, on the driver."""
    ray = require_ray()
    files = [f for p in ([paths] if isinstance(paths, (str, Path)) else paths)
             for f in transcript_files(p)]
    source = TranscriptFiles(files, format=format, columns=columns, role_map=role_map)
    source.check()
    return ray.data.read_datasource(datasource(source))


def score_dataset(
    ds: Any,
    model: str | Path | None = None,
    *,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    batch_size: int = 64,
    per_turn: bool = False,
    redact: bool = False,
    languages: Sequence[str] | None = None,
    columns: ColumnMap | None = None,
    role_map: Any = None,
    skip_ids: frozenset[str] | set[str] = frozenset(),
    actor_class: type[ScoreBatches] = ScoreBatches,
    **auditor_options: Any,
) -> Any:
    """Score a `ray.data.Dataset` of transcripts; returns a Dataset with one row per input
    record (lazy, like every Ray dataset).

    `ds` holds record rows (`read_transcripts`), JSONL-shaped rows (`id`, `messages` or
    `turns`, `agent_type`, `metadata`, ...) or long rows (one turn per row, with an order
    column; `columns` names them as for `qualaudit score`). Output columns: those of
    `qualaudit score`'s rows as a flat table (nested fields as JSON text, as in its CSV and
    Parquet files; `per_turn` adds `turns`), then `status` ("scored", "rejected" or
    "resumed": its id is in `skip_ids`) and `error` (for a rejected record, the JSON text of
    its `--errors` record: source, line, id, field, reason, hint). Every input id appears
    exactly once; a later record with an id already seen is rejected as a duplicate, and with
    `languages` a transcript detected in another language is rejected (as `qualaudit score
    --languages`).

    `model` must be a path every node can read (or a hub id every node can fetch); each actor
    loads it once. `actors` actors of `cpus_per_actor` CPUs and `gpus_per_actor` GPUs score
    `batch_size` transcripts per call; leave CPUs for the read and group tasks (on a 2-CPU
    machine one actor of one CPU). `auditor_options` go to `Auditor.from_pretrained`
    (precision, max_batch_tokens, top_evidence, max_turns, ...). `actor_class` may be a
    subclass of `ScoreBatches` that wraps scoring (the tests plant faults with one); it must
    be importable on the workers.
    """
    from ray.data import ActorPoolStrategy

    records = user_records(ds, columns=columns, role_map=role_map)
    grouped = records.groupby("key").map_groups(
        first_wins, fn_kwargs={"skip_ids": frozenset(skip_ids)}, batch_format="pyarrow")
    return grouped.map_batches(
        actor_class, batch_size=batch_size, batch_format="pyarrow",
        compute=ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
        fn_constructor_args=(str(model) if model is not None else None,),
        fn_constructor_kwargs={"driver_version": __version__, "per_turn": per_turn,
                               "redact": redact, "languages": languages, **auditor_options})

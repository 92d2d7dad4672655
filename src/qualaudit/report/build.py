"""The audit report as plain data: every section, computed from score files in one call.

Example:
    >>> report = build_report(["scores.jsonl"], by=["agent_type", "channel"], over="week",
    ...                       strata="intent")  # doctest: +SKIP
    >>> json.dumps(report)  # JSON-ready: dicts, lists, numbers, strings, None
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import UsageError
from ..io.scores import iter_scores
from ..schema import ROW_TARGETS, TranscriptScore
from . import table as table_module
from .ai_vs_human import ai_vs_human
from .cohorts import cohort_tables, omitted_cohorts, speed_tables
from .compare import compare as compare_tables
from .escalation import escalation_timing
from .table import AI_TYPES, ScoreTable, load_table
from .topics import DEFAULT_CLUSTERS, topic_strata
from .transcripts import read_transcript_facts
from .triage import QUEUE_SIZE, attach_evidence, evidence_wanted, select_queues

logger = logging.getLogger(__name__)

REPORT_FORMAT = "qualaudit.report/1"
# The sections in the order every rendering shows them (those a report holds).
SECTIONS = ("cohorts", "ai_vs_human", "escalation_timing", "speed", "trends", "triage",
            "agreement", "compare", "exclusions")


def present_sections(report: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(name, data) of each section the report holds, in `SECTIONS` order."""
    return [(name, report[name]) for name in SECTIONS if name in report]


@dataclass(frozen=True)
class ReportOptions:
    """What a report computes; every field has the CLI option of the same name.

    `thresholds` per target set the decision thresholds of shares, flips and triage queues
    (default 0.5); `reference_mix` maps stratum names to weights for the adjusted AI-vs-human
    difference (default: the pooled mix); `redact` redacts personal data in what the report
    shows from the data: transcript text in the queues and cohort (metadata) values.
    """

    by: tuple[str, ...] = ("agent_type",)
    strata: str | None = None
    transcripts: str | None = None
    over: str | None = None
    tz: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    labels: str | None = None
    redact: bool = True
    seed: int = 0
    n_boot: int = 1000
    n_clusters: int = DEFAULT_CLUSTERS
    reference_mix: Mapping[str, float] | None = None
    queue_size: int = QUEUE_SIZE
    fdr: float = 0.05
    title: str | None = None  # a line under the heading, e.g. what the data is


def build_report(scores: Sequence[str | Path] | Iterable[Mapping[str, Any] | TranscriptScore],
                 options: ReportOptions | None = None, *,
                 compare: tuple[str | Path, str | Path] | None = None,
                 on_progress: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """The audit report of score files (or rows) as JSON-ready data.

    Sections: "cohorts", "ai_vs_human", "escalation_timing", "speed", "trends" (with
    `options.over`), "triage", "agreement" (with `options.labels`), "compare" (with
    `compare=(A, B)`), then "exclusions" and "provenance".

    Raises:
        InputError: an unreadable score file or row (file and line named).
        UsageError: an option that does not fit the data (an unknown cohort column, ...).
    """
    options = options or ReportOptions()
    _check_options(options)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(scores, (str, Path)):
        scores = [scores]
    paths = isinstance(scores, (list, tuple)) and all(isinstance(s, (str, Path)) for s in scores)
    if not paths and hasattr(scores, "to_dict") and hasattr(scores, "columns"):  # a DataFrame
        scores = [{k: _cell(v) for k, v in r.items()} for r in scores.to_dict("records")]
    elif not paths:
        scores = [r.to_dict(per_turn=True) if isinstance(r, TranscriptScore) else r for r in scores]
    keys = list(dict.fromkeys([*options.by, *([options.strata] if options.strata else [])]))
    report: dict[str, Any] = {"format": REPORT_FORMAT, "title": options.title}
    table = None
    if not paths or scores:
        table = load_table(scores, keys, redact=options.redact, on_progress=on_progress)
        timings["read"] = table.seconds
        report.update(_sections(table, scores, paths, options, timings, on_progress))
    if compare is not None:
        start = time.perf_counter()
        a, b = (load_table([path], on_progress=on_progress) for path in compare)
        report["compare"] = compare_tables(a, b, options.thresholds, seed=options.seed,
                                           n_boot=options.n_boot)
        report["compare"]["a"], report["compare"]["b"] = str(compare[0]), str(compare[1])
        report["compare"]["exclusions"] = {"a": a.exclusions.as_list(),
                                           "b": b.exclusions.as_list()}
        report["compare"]["inputs"] = a.sources + b.sources
        timings["compare"] = time.perf_counter() - start
    if table is None and compare is None:
        raise UsageError("nothing to report: give score files, or --compare A B")
    timings["total"] = time.perf_counter() - clock
    report["provenance"] = _provenance(table, options, compare, timings)
    if compare is not None:  # the compared files are inputs too
        report["provenance"]["inputs"] += report["compare"]["inputs"]
        report["provenance"]["models"] += [dict(m, file=f"compare {side}")
                                           for side, t in (("A", a), ("B", b)) for m in t.models]
    return _plain(report)


def _check_options(options: ReportOptions) -> None:
    unknown = sorted(set(options.thresholds) - set(ROW_TARGETS))
    if unknown:
        raise UsageError(f"thresholds for unknown targets {unknown}; expected some of "
                         f"{', '.join(ROW_TARGETS)}")
    outside = {t: v for t, v in options.thresholds.items() if not 0 <= v <= 1}
    if outside:
        raise UsageError(f"thresholds must be in [0, 1] (scores are probabilities or, for "
                         f"empathy, a graded score in [0, 1]); found {outside}")
    if options.over is not None and options.over not in ("day", "week", "month"):
        raise UsageError(f"over: expected day, week or month, found {options.over!r}")


def _sections(table: ScoreTable, scores: Any, paths: bool, options: ReportOptions,
              timings: dict[str, float],
              on_progress: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"n_conversations": table.n}
    start = time.perf_counter()
    thresholds = dict(options.thresholds)
    out["cohorts"] = {"thresholds": {t: thresholds.get(t, 0.5) for t in ROW_TARGETS},
                      "tables": cohort_tables(table, options.by, thresholds, options.seed,
                                              options.n_boot),
                      "omitted": omitted_cohorts(table, options.by)}
    timings["cohorts"] = time.perf_counter() - start
    queues = select_queues(table, thresholds, options.queue_size)
    queued = {item["id"] for q in queues.values() for item in q["items"]}
    labelled: set[str] = set()
    labels = None
    if options.labels:
        from ..io.labels import read_labels

        labels = read_labels(options.labels)
        labelled = set(labels)
    # the second pass over the score files: full rows only for queued and labelled ids
    start = time.perf_counter()
    wanted = queued | labelled
    rows = {str(r["id"]): r for r in _rows(scores, paths, on_progress)
            if str(r.get("id")) in wanted}
    timings["rows_for_queues"] = time.perf_counter() - start
    ai = table.is_ai()
    escalation_turns = {table.ids[i]: int(table.escalation_turn[i])
                        for i in np.flatnonzero(ai & ~np.isnan(table.escalation_turn)
                                                & np.isnan(table.kept_going))}
    facts = None
    if options.transcripts:
        start = time.perf_counter()
        facts = read_transcript_facts(options.transcripts, openings=options.strata is None,
                                      escalation_turns=escalation_turns,
                                      text_turns=evidence_wanted(queues, rows))
        timings["transcripts"] = time.perf_counter() - start
    start = time.perf_counter()
    if options.strata:
        strata, names = table.codes[options.strata], table.values[options.strata]
        source = f"the column {options.strata!r}"
    elif facts is not None:
        strata, names, info = topic_strata(table.ids, facts.openings, options.n_clusters,
                                           options.seed)
        source = (f"topic clusters of the opening customer turns ({info['method']}, "
                  f"k={info.get('k', 0)}, seed {options.seed}; see qualaudit.report.topics)")
    else:
        strata, names, source = None, [], "none"
    out["ai_vs_human"] = ai_vs_human(table, strata, names, strata_source=source,
                                     reference=options.reference_mix, seed=options.seed,
                                     n_boot=options.n_boot)
    timings["ai_vs_human"] = time.perf_counter() - start
    out["escalation_timing"] = escalation_timing(table, facts.timing if facts else None)
    if facts is None and out["escalation_timing"].get("note"):
        out["escalation_timing"]["note"] += " (neither was given)"
    out["speed"] = speed_tables(table, options.by, options.seed, options.n_boot)
    if options.over:
        from .trends import trend_series

        start = time.perf_counter()
        out["trends"] = trend_series(table, options.by, options.over, options.tz,
                                     fdr=options.fdr, seed=options.seed)
        timings["trends"] = time.perf_counter() - start
    attach_evidence(queues, rows, facts.turn_text if facts else None, options.redact)
    out["triage"] = {"redacted": options.redact, "transcripts": facts is not None,
                     "queues": queues}
    if labels is not None:
        from .agreement import agreement

        out["agreement"] = agreement(list(rows[i] for i in rows if i in labelled), labels,
                                     seed=options.seed, n_boot=options.n_boot)
    exclusions = table.exclusions.as_list()
    if facts is not None and facts.rejected:
        exclusions.append({"reason": "transcript could not be read", "section": "transcripts",
                           "count": facts.rejected, "examples": facts.rejected_examples})
    out["exclusions"] = exclusions
    out["ai_share"] = float(ai.mean()) if table.n else None
    out["agent_types"] = {v: int((table.codes["agent_type"] == c).sum())
                          for c, v in enumerate(table.values["agent_type"])}
    out["metadata_keys"] = table.metadata_keys
    out["notes"] = []
    if len(table.models) > 1:
        out["notes"].append(
            f"the rows come from {len(table.models)} models (name, version, weights or "
            "precision differ; see provenance): differences between cohorts or periods scored "
            "by different models may be the models', not the conversations'")
    return out


def _cell(value: Any) -> Any:
    """A DataFrame cell as a row value: pandas' missing values (NaN, NaT, None) as None."""
    try:
        return None if value is None or (np.isscalar(value) and value != value) else value
    except (TypeError, ValueError):
        return value


def _rows(scores: Any, paths: bool,
          on_progress: Callable[[int, str], None] | None = None) -> Iterable[Mapping[str, Any]]:
    """The rows again (the second pass over the files), reporting progress as the first."""
    if not paths:
        yield from scores
        return
    count = 0
    for path in scores:
        for _, row in iter_scores(path):
            count += 1
            if on_progress is not None and count % table_module.PROGRESS_EVERY == 0:
                on_progress(count, f"{path}, second pass: full rows of the queued conversations")
            yield row


def _provenance(table: ScoreTable | None, options: ReportOptions,
                compare: tuple[Any, Any] | None, timings: dict[str, float]) -> dict[str, Any]:
    option_data = asdict(options)
    return {
        "qualaudit_version": __version__,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": table.sources if table is not None else [],
        "models": table.models if table is not None else [],
        "schema_versions": table.schema_versions if table is not None else {},
        "seed": options.seed, "n_boot": options.n_boot,
        "options": option_data,
        "compare": [str(p) for p in compare] if compare else None,
        "ai_types": list(AI_TYPES),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN and infinities as None, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value

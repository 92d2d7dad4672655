"""Score files streamed into a compact column table: what every report section reads.

A report over a million conversations cannot hold a million row dicts (each keeps its
evidence, distributions and metadata: kilobytes). `load_table` streams each file row by row
(`qualaudit.io.iter_scores`) and keeps only what the sections need, as typed columns:
scores as float64, cohort values as integer codes, the id as a string; about 300 bytes per
conversation with the set of ids seen (measured: benchmarks/README.md). Rows that cannot
be used, wholly or for one section, are counted with their reason and the first locations
(`Exclusions`), never dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..io.scores import iter_scores, row_metadata
from ..redact import redact_text
from ..schema import ROW_TARGETS, TranscriptScore

logger = logging.getLogger(__name__)

MISSING = "(missing)"  # the cohort of rows without a value for the key: shown, never dropped
SHOWN_LOCATIONS = 5  # locations kept per exclusion reason
PROGRESS_EVERY = 100_000  # rows between two progress calls
# Cohorts per key that a report lists (the largest): a key with thousands of values (say a
# customer id) would otherwise make tables nobody reads; the rest are counted.
MAX_COHORTS = 50
AI_TYPES = ("ai", "mixed")  # conversations an AI assistant answered (mixed: handed over later)
TIME_FIELDS = ("started_at", "ended_at")


@dataclass
class Exclusions:
    """Rows left out of the whole report or of one section: per reason, a count and the
    first `SHOWN_LOCATIONS` locations (file, line, id)."""

    reasons: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, reason: str, section: str, source: str, line: int, row_id: Any) -> None:
        entry = self.reasons.setdefault(reason, {"reason": reason, "section": section,
                                                 "count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < SHOWN_LOCATIONS:
            entry["examples"].append({"source": source, "line": line, "id": str(row_id)})

    def as_list(self) -> list[dict[str, Any]]:
        return sorted(self.reasons.values(), key=lambda e: (e["section"], e["reason"]))


@dataclass
class ScoreTable:
    """One entry per conversation, as columns (numpy arrays of equal length `n`).

    `codes[key]` holds integer codes into `values[key]` for each cohort key asked for
    (`agent_type` included); `customer` is a code per row (-1: none) used to cluster
    intervals; `model` a code into `models` (name, version, weights, precision);
    `started`/`ended` are epoch seconds (NaN where absent or unparsable); `timing` the turns
    an AI kept going after its escalation turn, from per-turn rows (NaN where unknown).
    """

    ids: list[str]
    scores: dict[str, np.ndarray]
    escalation_turn: np.ndarray
    n_turns: np.ndarray
    codes: dict[str, np.ndarray]
    values: dict[str, list[str]]
    customer: np.ndarray
    model: np.ndarray
    models: list[dict[str, Any]]
    started: np.ndarray
    ended: np.ndarray
    kept_going: np.ndarray
    handed_off: np.ndarray
    per_turn_rows: int
    sources: list[dict[str, Any]]
    schema_versions: dict[str, int]
    metadata_keys: list[str]
    exclusions: Exclusions
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.ids)

    def labels(self, key: str) -> np.ndarray:
        """The cohort value of every row for `key`, as strings."""
        return np.asarray(self.values[key], dtype=object)[self.codes[key]]

    def is_ai(self) -> np.ndarray:
        agent = self.labels("agent_type")
        return np.isin(agent, AI_TYPES)


def largest_cohorts(table: ScoreTable, key: str, limit: int = MAX_COHORTS,
                    ) -> tuple[list[tuple[str, np.ndarray]], dict[str, int]]:
    """([(cohort value, its row indices)] for the `limit` largest cohorts of `key`, largest
    first; {"cohorts", "rows"} of those left out). One sort, whatever the number of values."""
    codes = table.codes[key]
    counts = np.bincount(codes, minlength=len(table.values[key]))
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    ranked = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    shown = [(table.values[key][c], order[starts[c]:starts[c + 1]]) for c in ranked[:limit]]
    rest = ranked[limit:]
    return shown, {"cohorts": len(rest), "rows": int(counts[rest].sum()) if rest else 0}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Times a report accepts, in epoch seconds: years 1900 to 2200 (pandas' periods end in 2262;
# a number far outside is a unit mix-up, say milliseconds, not a date)
TIME_RANGE = (-2_208_988_800.0, 7_258_118_400.0)


def parse_time(value: Any) -> float:
    """Epoch seconds of an ISO 8601 text (a trailing Z, an offset, or none: then UTC) or of a
    number or numeric text (epoch seconds); NaN for None (or NaN); ValueError for anything
    else, or a time outside the years 1900-2200 (`TIME_RANGE`: milliseconds, say)."""
    if value is None or value == "":
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        try:  # epoch seconds written as text (a CSV cell)
            value = float(text)
        except ValueError:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        seconds = stamp.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if math.isnan(seconds):
            return math.nan
    else:
        raise ValueError(f"expected an ISO 8601 date/time, found {type(value).__name__}")
    if not TIME_RANGE[0] <= seconds <= TIME_RANGE[1]:
        raise ValueError(f"a time outside the years 1900-2200 ({seconds:g} epoch seconds; "
                         "milliseconds?)")
    return seconds


def load_table(
    sources: Sequence[str | Path] | Iterable[Mapping[str, Any] | TranscriptScore],
    keys: Sequence[str] = (),
    *,
    hash_files: bool = True,
    redact: bool = True,
    on_progress: Callable[[int, str], None] | None = None,
) -> ScoreTable:
    """Score files (paths), or rows / TranscriptScores in Python, into a `ScoreTable`.

    Args:
        sources: score files written by `qualaudit score` (JSONL, CSV, TSV, Parquet; every
            schema 1.x), or an iterable of rows (dicts or TranscriptScore), or a DataFrame.
        keys: cohort keys to code (`agent_type` and any metadata key; `language` is the
            given `metadata.language`, else the row's detected `language`); a key no row has
            is a UsageError listing the keys found.
        hash_files: put each file's sha256 in `sources` (provenance).
        redact: cohort values (metadata a report shows) with personal data redacted
            (`qualaudit.redact`); values that redact alike form one cohort.
        on_progress: called as (rows read so far, current source) every `PROGRESS_EVERY`
            rows.

    Raises:
        InputError: a row of another schema major version, or a file that cannot be read,
            naming the file and line.
        UsageError: a cohort key that no row carries.
    """
    started_clock = time.perf_counter()
    keys = list(dict.fromkeys(["agent_type", *keys]))
    builder = _Builder(keys, redact)
    inputs: list[dict[str, Any]] = []
    for source, rows in _row_streams(sources):
        info: dict[str, Any] = {"path": source, "rows": 0}
        if hash_files and Path(source).is_file():
            info["sha256"] = file_sha256(source)
        inputs.append(info)
        for line, row in rows:
            builder.add(row, source, line)
            info["rows"] += 1
            if on_progress is not None and builder.read % PROGRESS_EVERY == 0:
                on_progress(builder.read, source)
    for key in keys:
        if key != "agent_type" and key not in builder.metadata_keys and not (
                key == "language" and builder.row_languages):
            found = ", ".join(sorted(builder.metadata_keys)) or "none"
            raise UsageError(f"cohort column {key!r} is in no score row; the rows' metadata keys "
                             f"are: {found} (and agent_type)")
    table = builder.table(inputs)
    table.seconds = time.perf_counter() - started_clock
    logger.debug("read %d score rows from %d source(s) in %.1fs", builder.read, len(inputs),
                table.seconds)
    return table


def _row_streams(sources: Any) -> Iterable[tuple[str, Iterable[tuple[int, Mapping[str, Any]]]]]:
    """(source name, (line, row) pairs) per input: files streamed, Python rows as one source."""
    if hasattr(sources, "to_dict") and hasattr(sources, "columns"):  # a pandas DataFrame
        yield "<DataFrame>", enumerate(sources.to_dict("records"), 1)
        return
    if isinstance(sources, (str, Path)):
        sources = [sources]
    items = list(sources) if isinstance(sources, (list, tuple)) else None
    if items is not None and items and all(isinstance(s, (str, Path)) for s in items):
        for path in items:
            if not Path(path).is_file():
                raise InputError("the score file does not exist (or is not a file)",
                                 source=str(path))
            yield str(path), iter_scores(path)
        return
    rows = (r.to_dict(per_turn=True) if isinstance(r, TranscriptScore) else r
            for r in (items if items is not None else sources))
    yield "<rows>", enumerate(rows, 1)


class _Builder:
    """Accumulates rows into compact columns (array.array / lists of codes)."""

    def __init__(self, keys: list[str], redact: bool = True) -> None:
        self.keys = keys
        self.redact = redact
        self.raw_codes: dict[str, dict[Any, int]] = {k: {} for k in keys}
        self.read = 0
        self.ids: list[str] = []
        self.seen: set[str] = set()
        self.scores = {t: array("d") for t in ROW_TARGETS}
        self.escalation_turn, self.n_turns = array("d"), array("d")
        self.started, self.ended = array("d"), array("d")
        self.kept_going, self.handed_off = array("d"), array("d")
        self.codes = {k: array("i") for k in keys}
        self.lookup: dict[str, dict[str, int]] = {k: {} for k in keys}
        self.customer = array("i")
        self.customers: dict[str, int] = {}
        self.model = array("i")
        self.models: dict[tuple, int] = {}
        self.per_turn_rows = 0
        self.schema_versions: dict[str, int] = {}
        self.metadata_keys: set[str] = set()
        self.row_languages = False  # some row has a detected `language` (schema 1.2)
        self.exclusions = Exclusions()

    def add(self, row: Mapping[str, Any], source: str, line: int) -> None:
        self.read += 1
        row_id = row.get("id")
        version = str(row.get("schema_version") or "1.0")
        if not version.startswith("1."):
            raise InputError(f"a score row of schema version {version}; this qualaudit reads "
                             "1.x", source=source, line=line, field="schema_version",
                             hint="Read it with the qualaudit version that wrote it, or rescore")
        if row_id is None or str(row_id) == "":
            self.exclusions.add("no id", "all", source, line, row_id)
            return
        row_id = str(row_id)
        if row_id in self.seen:
            self.exclusions.add("a second row for an id already read (the first is used)",
                                "all", source, line, row_id)
            return
        numbers = {t: _number(row.get(t)) for t in ROW_TARGETS}
        if all(math.isnan(v) for v in numbers.values()):
            self.exclusions.add("no score at all (not a qualaudit score row?)", "all", source,
                                line, row_id)
            return
        self.seen.add(row_id)
        self.ids.append(row_id)
        self.schema_versions[version] = self.schema_versions.get(version, 0) + 1
        for target, value in numbers.items():
            self.scores[target].append(value)
        escalation_turn = _number(row.get("escalation_turn"))
        self.escalation_turn.append(escalation_turn)
        self.n_turns.append(_number(row.get("n_turns")))
        metadata = row_metadata(row)
        self.metadata_keys.update(metadata)
        agent_type = row.get("agent_type")
        if agent_type in (None, ""):
            self.exclusions.add("no agent_type (left out of AI vs human)", "ai_vs_human",
                                source, line, row_id)
        if row.get("language") is not None:  # detected, since schema 1.2
            self.row_languages = True
        for key in self.keys:
            value = (agent_type if key == "agent_type"
                     else metadata.get(key, row.get("language")) if key == "language"
                     else metadata.get(key))
            self.codes[key].append(self._code(key, value))
        customer = metadata.get("customer_id")
        self.customer.append(-1 if customer in (None, "") else
                             self.customers.setdefault(str(customer), len(self.customers)))
        self.model.append(self._model(row.get("model"), version))
        for name, column in (("started_at", self.started), ("ended_at", self.ended)):
            try:
                column.append(parse_time(metadata.get(name)))
            except (ValueError, TypeError, OverflowError):
                column.append(math.nan)
                self.exclusions.add(f"metadata.{name} is not a date/time (ISO 8601 or epoch "
                                    "seconds, years 1900-2200)", "trends and speed", source,
                                    line, row_id)
        if self.ended[-1] < self.started[-1]:  # NaN compares False: only two real times
            self.exclusions.add("metadata.ended_at is before started_at", "speed", source,
                                line, row_id)
        kept, handed = math.nan, math.nan
        turns = row.get("turns")
        if isinstance(turns, list) and turns:
            self.per_turn_rows += 1
            if not math.isnan(escalation_turn) and agent_type in AI_TYPES:
                kept, handed = turns_after_escalation(
                    [(t.get("index"), t.get("role"), t.get("agent_type")) for t in turns],
                    int(escalation_turn))
        self.kept_going.append(kept)
        self.handed_off.append(handed)

    def _code(self, key: str, value: Any) -> int:
        """The code of a cohort value; each distinct raw value is labelled (and redacted) once."""
        raw = self.raw_codes[key]
        marker = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        code = raw.get(marker)
        if code is None:
            text = MISSING if value is None or value == "" else str(value)
            if self.redact and key != "agent_type":
                text = redact_text(text)
            lookup = self.lookup[key]
            code = raw[marker] = lookup.setdefault(text, len(lookup))
        return code

    def _model(self, model: Any, version: str) -> int:
        model = model if isinstance(model, Mapping) else {}
        precision = model.get("precision") or ("fp32 (schema 1.0: not recorded)"
                                               if version == "1.0" else "unknown")
        key = (model.get("name"), model.get("version"), model.get("weights_sha256"), precision)
        return self.models.setdefault(key, len(self.models))

    def table(self, inputs: list[dict[str, Any]]) -> ScoreTable:
        as_float = lambda column: np.frombuffer(column, dtype=np.float64).copy()  # noqa: E731
        models = [{"name": k[0], "version": k[1], "weights_sha256": k[2], "precision": k[3]}
                  for k in self.models]
        model_codes = np.frombuffer(self.model, dtype=np.int32).copy()
        counts = np.bincount(model_codes, minlength=len(models)) if models else []
        for info, count in zip(models, counts):
            info["rows"] = int(count)
        return ScoreTable(
            ids=self.ids,
            scores={t: as_float(c) for t, c in self.scores.items()},
            escalation_turn=as_float(self.escalation_turn), n_turns=as_float(self.n_turns),
            codes={k: np.frombuffer(c, dtype=np.int32).copy() for k, c in self.codes.items()},
            values={k: list(v) for k, v in self.lookup.items()},
            customer=np.frombuffer(self.customer, dtype=np.int32).copy(),
            model=model_codes, models=models,
            started=as_float(self.started), ended=as_float(self.ended),
            kept_going=as_float(self.kept_going), handed_off=as_float(self.handed_off),
            per_turn_rows=self.per_turn_rows, sources=inputs,
            schema_versions=self.schema_versions, metadata_keys=sorted(self.metadata_keys),
            exclusions=self.exclusions)


def turns_after_escalation(turns: Sequence[tuple[Any, Any, Any]],
                           escalation_turn: int) -> tuple[float, float]:
    """(AI agent turns after `escalation_turn` before a hand-off or the end, 1.0 if a human
    agent turn came later else 0.0), from (input index, role, agent_type) per turn: how long
    a bot kept answering after escalation became needed."""
    kept = 0
    for index, role, agent_type in sorted(turns, key=lambda t: (t[0] is None, t[0] or 0)):
        if index is None or index <= escalation_turn or role != "agent":
            continue
        if agent_type == "human":
            return float(kept), 1.0
        kept += 1
    return float(kept), 0.0


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

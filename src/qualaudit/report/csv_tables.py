"""The report's tables as CSV files, for spreadsheets: one file per table, long format.

Spreadsheets run a cell that starts with =, +, -, @ as a formula, so every text cell that
comes from data (ids, cohort values, strata, transcript text) is guarded the way the score
outputs are (`io.writers.formula_guarded`: a leading quote); numbers are written as numbers,
never guarded (a difference of -0.05 stays a number).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.writers import formula_guarded


def _write(path: Path, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        writer.writerows([formula_guarded(v) if isinstance(v, str) else v for v in row]
                         for row in rows)
    return path


def write_csv_tables(report: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """Writes cohorts.csv, ai_vs_human.csv, trends.csv, triage.csv and compare.csv (those the
    report holds) into `directory` (created); returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if "cohorts" in report:
        written.append(_write(directory / "cohorts.csv",
                              ["key", "cohort", "n", "small", "target", "mean", "low", "high",
                               "share", "share_low", "share_high", "threshold"],
                              _cohort_rows(report["cohorts"])))
    if report.get("ai_vs_human", {}).get("targets"):
        written.append(_write(directory / "ai_vs_human.csv",
                              ["target", "stratum", "n_ai", "n_human", "mean_ai", "mean_human",
                               "weight", "comparable"],
                              ([t, s["name"], s["n_a"], s["n_b"], s["mean_a"], s["mean_b"],
                                s["weight"], s["comparable"]]
                               for t, r in report["ai_vs_human"]["targets"].items()
                               for s in r["strata"])))
    if report.get("trends", {}).get("series"):
        trends = report["trends"]
        written.append(_write(directory / "trends.csv",
                              ["key", "cohort", "target", "period", "n", "mean", "low", "high",
                               "small", "alert", "trend"],
                              ([s["key"], s["cohort"], t, trends["periods"][i], p["n"], p["mean"],
                                p["low"], p["high"], p["small"], r["alert"], r["trend"]]
                               for s in trends["series"] for t, r in s["targets"].items()
                               for i, p in enumerate(r["points"]))))
    if "triage" in report:
        written.append(_write(directory / "triage.csv",
                              ["target", "rank", "id", "score", "agent_type", "evidence_turn",
                               "evidence_text"],
                              _triage_rows(report["triage"]["queues"])))
    if report.get("compare", {}).get("targets"):
        written.append(_write(directory / "compare.csv", ["target", "id", "a", "b", "change"],
                              ([t, m["id"], m["a"], m["b"], m["change"]]
                               for t, r in report["compare"]["targets"].items()
                               for m in r["top_movers"])))
    return written


def _cohort_rows(section: Mapping[str, Any]) -> Iterable[list[Any]]:
    for key, entries in section["tables"].items():
        for e in entries:
            for target, r in e["targets"].items():
                share = r.get("share") or {}
                yield [key, e["cohort"], e["n"], e["small"], target, r["mean"]["value"],
                       r["mean"]["low"], r["mean"]["high"], share.get("value"), share.get("low"),
                       share.get("high"), share.get("threshold")]


def _triage_rows(queues: Mapping[str, Any]) -> Iterable[list[Any]]:
    for target, queue in queues.items():
        for rank, item in enumerate(queue["items"], 1):
            evidence = item["evidence"] or [{"index": None, "text": None}]
            for e in evidence:
                yield [target, rank, item["id"], item["score"], item["agent_type"], e["index"],
                       e.get("text")]

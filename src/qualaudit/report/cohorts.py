"""Cohort tables: every score per cohort (agent type, channel, team, any metadata key) with
95% intervals, and handle time beside quality.

Means get a bootstrap interval, clustered by `customer_id` when rows carry one (one
customer's conversations move together), analytic above `metrics.ANALYTIC_ABOVE_N`
customers; shares of decisions over a threshold get a Wilson interval (on the effective n,
n / design effect, when customers cluster). Cohorts smaller than
`MIN_COHORT_N` are shown and marked `small`, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import design_effect, finite_or_none, mean_interval, wilson_interval
from ..schema import ROW_TARGETS
from .table import ScoreTable, largest_cohorts

MIN_COHORT_N = 30  # below this a cohort is marked small: its intervals are wide and unstable
# Which way is worse, per target: +1 when a higher score is worse (repeat inquiry,
# escalation), -1 when lower is worse.
WORSE = {"resolution": -1, "satisfaction": -1, "empathy": -1, "repeat_inquiry": 1,
         "escalation": 1}
SHARE_TARGETS = ("resolution", "satisfaction", "repeat_inquiry", "escalation")  # probabilities
DEFAULT_THRESHOLD = 0.5


def clusters_of(table: ScoreTable, index: np.ndarray) -> np.ndarray | None:
    """Cluster ids for intervals over rows `index`: the customer, or None when no row has
    one; rows without a customer are their own cluster."""
    customer = table.customer[index]
    if not np.any(customer >= 0):
        return None
    own = -1 - np.arange(customer.size)  # unique negative ids for rows without a customer
    return np.where(customer >= 0, customer, own)


def target_summary(table: ScoreTable, index: np.ndarray, target: str, threshold: float,
                   seed: int, n_boot: int) -> dict[str, Any]:
    """Mean with interval and, for probabilities, the share at or over `threshold` (Wilson)."""
    values = table.scores[target][index]
    clusters = clusters_of(table, index)
    out: dict[str, Any] = {"mean": _interval(mean_interval(values, clusters,
                                                           n_resamples=n_boot, seed=seed))}
    if target in SHARE_TARGETS:
        valid = ~np.isnan(values)
        decisions = (values[valid] >= threshold).astype(np.float64)
        hits, n = float(decisions.sum()), int(valid.sum())
        # one customer's decisions move together: Wilson on the effective n
        deff = 1.0 if clusters is None else design_effect(decisions, clusters[valid])
        low, high = wilson_interval(hits / deff, n / deff)
        out["share"] = {"value": hits / n if n else None, "low": finite_or_none(low),
                        "high": finite_or_none(high), "threshold": threshold,
                        "design_effect": round(deff, 3)}
    return out


def cohort_tables(table: ScoreTable, keys: Sequence[str], thresholds: Mapping[str, float],
                  seed: int = 0, n_boot: int = 1000) -> dict[str, list[dict[str, Any]]]:
    """Per key, one entry per cohort value (the `table.MAX_COHORTS` largest, largest first):
    n, small, and per target its `target_summary`."""
    tables = {}
    for key in keys:
        tables[key] = [{
            "cohort": label, "n": int(index.size), "small": bool(index.size < MIN_COHORT_N),
            "targets": {t: target_summary(table, index, t, thresholds.get(t, DEFAULT_THRESHOLD),
                                          seed, n_boot) for t in ROW_TARGETS},
        } for label, index in largest_cohorts(table, key)[0]]
    return tables


def omitted_cohorts(table: ScoreTable, keys: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per key with more than `MAX_COHORTS` values: how many cohorts and rows are not listed."""
    omitted = {key: largest_cohorts(table, key)[1] for key in keys}
    return {key: rest for key, rest in omitted.items() if rest["cohorts"]}


def speed_tables(table: ScoreTable, keys: Sequence[str], seed: int = 0,
                 n_boot: int = 1000) -> dict[str, Any]:
    """Handle time (minutes from `metadata.started_at` to `ended_at`) per cohort, next to
    resolution and repeat inquiry, and for AI vs human a sentence with both sides."""
    minutes = (table.ended - table.started) / 60.0
    timed = ~np.isnan(minutes) & (minutes >= 0)
    negative = int(np.sum(minutes < 0))
    out: dict[str, Any] = {"n_timed": int(timed.sum()), "negative_durations": negative,
                           "tables": {}, "summary": None}
    if not timed.any():
        out["note"] = ("no row carries both metadata.started_at and metadata.ended_at: handle "
                       "time is not reported")
        return out
    for key in keys:
        entries = []
        for label, index in largest_cohorts(table, key)[0]:
            index = index[timed[index]]
            if index.size == 0:
                continue
            spent = minutes[index]
            entries.append({
                "cohort": label, "n": int(index.size), "small": bool(index.size < MIN_COHORT_N),
                "median_minutes": float(np.median(spent)),
                "minutes": _interval(mean_interval(spent, clusters_of(table, index),
                                                   n_resamples=n_boot, seed=seed)),
                "resolution": _interval(mean_interval(table.scores["resolution"][index],
                                                      n_resamples=n_boot, seed=seed)),
                "repeat_inquiry": _interval(mean_interval(table.scores["repeat_inquiry"][index],
                                                          n_resamples=n_boot, seed=seed)),
            })
        out["tables"][key] = sorted(entries, key=lambda e: -e["n"])
    by_type = {e["cohort"]: e for e in out["tables"].get("agent_type", [])}
    if "ai" in by_type and "human" in by_type:
        ai, human = by_type["ai"], by_type["human"]
        out["summary"] = (
            f"Median handle time {human['median_minutes']:.1f} min (human) vs "
            f"{ai['median_minutes']:.1f} min (AI); resolution {human['resolution']['value']:.2f} "
            f"vs {ai['resolution']['value']:.2f} "
            f"({ai['resolution']['value'] - human['resolution']['value']:+.2f}), repeat inquiry "
            f"{human['repeat_inquiry']['value']:.2f} vs {ai['repeat_inquiry']['value']:.2f} "
            f"({ai['repeat_inquiry']['value'] - human['repeat_inquiry']['value']:+.2f}).")
    return out


def _interval(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"value": finite_or_none(result["mean"]), "low": finite_or_none(result["low"]),
            "high": finite_or_none(result["high"]), "method": result["method"]}


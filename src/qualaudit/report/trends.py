"""Trends and decline alerts: a series per cohort and target over days, ISO weeks or months,
with intervals, two tests for a sustained change for the worse, and model changes flagged.

Periods: `started_at` (else `ended_at`) in UTC by default, in `tz` when given; weeks are ISO
weeks (Monday to Sunday, labelled like 2026-W07). Per period: n, the mean and a 95% normal
interval (mean +- 1.96 SD / sqrt(n)); periods below `MIN_PERIOD_N` are marked small.

Tests, per series and target, for a change for the worse (a fall in resolution,
satisfaction or empathy; a rise in repeat inquiry or escalation):

- Alert: a one-sided CUSUM (k = 0.5) of the volume-aware departures of each period's mean
  from a baseline (the first `baseline_periods` periods: by default half the periods, 3 to
  8), z_t = (mean_t - baseline mean) / (baseline SD / sqrt(n_t)). Its p-value is the chance
  that departures with no change give as high a CUSUM maximum (simulated, 4000 draws, fixed
  seed; the baseline mean's own error is part of the simulation), so each series alone
  false-alarms at the level the p-value is read at.
- Retrospective: Mann-Kendall on the period means, with the Hamed-Rao correction of its
  variance for autocorrelation.

False alarms over many cohorts x targets: the p-values of each test are put through
Benjamini-Hochberg at `fdr` (default 0.05) together, so on stationary data the chance of any
alert in the report is at most about 5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np

from ..errors import UsageError
from ..metrics import benjamini_hochberg, cusum_p_value, cusum_path, finite_or_none, mann_kendall
from ..schema import ROW_TARGETS
from .cohorts import MIN_COHORT_N, WORSE
from .table import ScoreTable, largest_cohorts

MIN_PERIOD_N = MIN_COHORT_N
MIN_PERIODS = 6  # fewer periods than this: series are shown, no test is run
CUSUM_K = 0.5
PERIODS = ("day", "week", "month")


def period_codes(epoch_seconds: np.ndarray, over: str, tz: str | None = None,
                 ) -> tuple[np.ndarray, list[str]]:
    """(period code per row, -1 where the time is NaN; period labels in time order)."""
    import pandas as pd

    if over not in PERIODS:
        raise UsageError(f"--over: expected one of {', '.join(PERIODS)}, found {over!r}")
    valid = ~np.isnan(epoch_seconds)
    codes = np.full(epoch_seconds.size, -1, dtype=np.int64)
    if not valid.any():
        return codes, []
    stamps = pd.to_datetime(epoch_seconds[valid], unit="s", utc=True)
    if tz:
        try:
            stamps = stamps.tz_convert(tz)
        except Exception as exc:  # pytz/zoneinfo raise several types for an unknown zone
            raise UsageError(f"--tz: unknown time zone {tz!r} (expected e.g. Europe/Berlin)") from exc
    days = stamps.tz_localize(None).values.astype("datetime64[D]").astype(np.int64)
    if over == "day":
        keys = days
    elif over == "week":
        keys = days - (days + 3) % 7  # the Monday of the ISO week (1970-01-01 was a Thursday)
    else:
        keys = stamps.tz_localize(None).values.astype("datetime64[M]").astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    codes[valid] = inverse
    return codes, [_label(int(k), over) for k in unique]


def _label(key: int, over: str) -> str:
    if over == "month":
        return str(np.datetime64(key, "M"))
    day = date.fromordinal(date(1970, 1, 1).toordinal() + key)
    if over == "day":
        return day.isoformat()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def trend_series(table: ScoreTable, keys: Sequence[str], over: str, tz: str | None = None,
                 baseline_periods: int | None = None, fdr: float = 0.05,
                 seed: int = 0) -> dict[str, Any]:
    """Series for "all" and each cohort of each key, per target, with the tests and BH."""
    times = np.where(np.isnan(table.started), table.ended, table.started)
    codes, labels = period_codes(times, over, tz)
    out: dict[str, Any] = {
        "over": over, "tz": tz or "UTC", "periods": labels, "n_untimed": int((codes < 0).sum()),
        "tests": {"alert": "one-sided CUSUM (k=0.5) of volume-aware departures from a "
                           "baseline, simulated p-value",
                  "retrospective": "Mann-Kendall with Hamed-Rao autocorrelation correction",
                  "multiplicity": f"Benjamini-Hochberg at FDR {fdr:g} per test over all "
                                  "series x targets"},
        "series": [], "alerts": [], "notes": [],
    }
    if not labels:
        out["notes"].append("no row has a parseable metadata.started_at or ended_at: no trends")
        return out
    n_periods = len(labels)
    baseline = baseline_periods or max(3, min(8, n_periods // 2))
    out["baseline_periods"] = labels[:baseline]
    testable = n_periods >= max(MIN_PERIODS, baseline + 2)
    if not testable:
        out["notes"].append(f"{n_periods} period(s): at least {max(MIN_PERIODS, baseline + 2)} "
                            "are needed for the tests; series shown without them")
    groups = [("all", "all", np.ones(table.n, dtype=bool))]
    for key in keys:
        for value, index in largest_cohorts(table, key)[0]:
            member = np.zeros(table.n, dtype=bool)
            member[index] = True
            groups.append((key, value, member))
    for key, value, member in groups:
        rows = member & (codes >= 0)
        if not rows.any():
            continue
        series = {"key": key, "cohort": value, "model_changes": _model_changes(
            table.model[rows], codes[rows], labels, table.models), "targets": {}}
        for target in ROW_TARGETS:
            series["targets"][target] = series_with_tests(
                table.scores[target][rows], codes[rows], n_periods, baseline, WORSE[target],
                testable, seed)
        out["series"].append(series)
    _flag(out, fdr)
    return out


def series_with_tests(values: np.ndarray, codes: np.ndarray, n_periods: int, baseline: int,
                   worse: int, testable: bool = True, seed: int = 0) -> dict[str, Any]:
    """One target's series: per period n, mean and interval; with `testable`, the CUSUM and
    Mann-Kendall p-values for a change for the worse (`worse`: +1 a rise, -1 a fall) after
    the first `baseline` periods, and where the CUSUM puts the change's start."""
    keep = ~np.isnan(values)
    values, codes = values[keep], codes[keep]
    n = np.bincount(codes, minlength=n_periods).astype(np.float64)
    sums = np.bincount(codes, weights=values, minlength=n_periods)
    squares = np.bincount(codes, weights=values ** 2, minlength=n_periods)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / n
        sd = np.sqrt(np.maximum(squares / n - means ** 2, 0) * n / np.maximum(n - 1, 1))
        half = 1.96 * sd / np.sqrt(n)
    points = [{"n": int(n[t]), "mean": finite_or_none(means[t]), "low": finite_or_none(means[t] - half[t]),
               "high": finite_or_none(means[t] + half[t]), "small": bool(n[t] < MIN_PERIOD_N)}
              for t in range(n_periods)]
    out: dict[str, Any] = {"points": points, "cusum_p": None, "mk_p": None, "alert": False,
                           "trend": False}
    if not testable or n[:baseline].sum() < 2 or n[baseline:].sum() == 0:
        return out
    base_n = n[:baseline].sum()
    base_mean = sums[:baseline].sum() / base_n
    base_sd = math.sqrt(max(squares[:baseline].sum() / base_n - base_mean ** 2, 0)
                        * base_n / max(base_n - 1, 1))
    if base_sd == 0:
        base_sd = 1e-9
    monitored = np.flatnonzero(n[baseline:] > 0) + baseline
    z = worse * (means[monitored] - base_mean) / (base_sd / np.sqrt(n[monitored]))
    path = cusum_path(z, CUSUM_K)
    out["cusum_p"] = cusum_p_value(z, CUSUM_K, seed=seed,
                                   baseline_weight=np.sqrt(n[monitored] / base_n))
    peak = int(np.argmax(path))
    zeros = np.flatnonzero(path[:peak] == 0)
    out["change_from"] = int(monitored[zeros[-1] + 1 if zeros.size else 0])
    out["baseline_mean"] = float(base_mean)
    trend = mann_kendall(means[n > 0])
    out["mk_p"] = finite_or_none(trend["p_increase"] if worse > 0 else trend["p_decrease"])
    out["sen_slope"] = finite_or_none(trend["slope"])
    return out


def _flag(out: dict[str, Any], fdr: float) -> None:
    """Benjamini-Hochberg over every series x target, per test; alerts listed."""
    cells = [(s, t, r) for s in out["series"] for t, r in s["targets"].items()]
    for test, flag in (("cusum_p", "alert"), ("mk_p", "trend")):
        p = np.array([np.nan if r[test] is None else r[test] for _, _, r in cells])
        for (_, _, result), rejected in zip(cells, benjamini_hochberg(p, fdr)):
            result[flag] = bool(rejected)
    periods = out["periods"]
    for series, target, result in cells:
        if not (result["alert"] or result["trend"]):
            continue
        alert = {"key": series["key"], "cohort": series["cohort"], "target": target,
                 "cusum_alert": result["alert"], "trend": result["trend"],
                 "cusum_p": result["cusum_p"], "mk_p": result["mk_p"],
                 "since": periods[result["change_from"]] if result["alert"] else None,
                 "direction": "rise" if WORSE[target] > 0 else "fall"}
        if series["model_changes"]:
            alert["model_change"] = ("the model changed within this series "
                                     f"({', '.join(c['period'] for c in series['model_changes'])}): "
                                     "this may be a model change, not a quality change")
        out["alerts"].append(alert)


def _model_changes(model_codes: np.ndarray, codes: np.ndarray, labels: list[str],
                   models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Periods whose set of models differs from the period before (or holds several)."""
    width = max(len(models), 1)
    pairs = np.unique(codes.astype(np.int64) * width + model_codes)
    present_by_period: dict[int, list[int]] = {}
    for pair in pairs.tolist():
        present_by_period.setdefault(pair // width, []).append(pair % width)
    changes, previous = [], None
    for period in sorted(present_by_period):
        present = present_by_period[period]
        if (previous is not None and present != previous) or len(present) > 1:
            changes.append({"period": labels[period], "models": [_model_name(models[m])
                                                                 for m in present]})
        previous = present
    return changes


def _model_name(model: dict[str, Any]) -> str:
    sha = (model.get("weights_sha256") or "")[:12]
    return f"{model.get('name')} {model.get('version')} ({sha}, {model.get('precision')})"


"""Two versions compared (`--compare A B`): two score files of the same transcripts (two
model versions, or two bots answering the same scenarios), paired on the ids they share.

Per target: the mean paired difference B - A with a bootstrap interval over conversations
(analytic above `metrics.ANALYTIC_ABOVE_N`), the share of decisions at the threshold that
flipped (Wilson interval; up and down counted apart), and the conversations that moved most.
Ids in only one file are counted, not paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics import finite_or_none, mean_interval, wilson_interval
from ..schema import ROW_TARGETS
from .cohorts import DEFAULT_THRESHOLD, SHARE_TARGETS
from .table import ScoreTable

TOP_MOVERS = 10


def compare(a: ScoreTable, b: ScoreTable, thresholds: Mapping[str, float], *,
            seed: int = 0, n_boot: int = 1000, top: int = TOP_MOVERS) -> dict[str, Any]:
    """Paired differences (B - A) per target on the ids both tables hold."""
    position_b = {tid: i for i, tid in enumerate(b.ids)}
    ia, ib = [], []
    for i, tid in enumerate(a.ids):
        j = position_b.get(tid)
        if j is not None:
            ia.append(i)
            ib.append(j)
    ia_arr, ib_arr = np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)
    out: dict[str, Any] = {"n_paired": int(ia_arr.size), "only_in_a": a.n - int(ia_arr.size),
                           "only_in_b": b.n - int(ib_arr.size), "targets": {},
                           "models_a": a.models, "models_b": b.models}
    if ia_arr.size == 0:
        out["note"] = "the two files share no id: nothing to pair"
        return out
    ids = np.asarray(a.ids, dtype=object)[ia_arr]
    for target in ROW_TARGETS:
        before, after = a.scores[target][ia_arr], b.scores[target][ib_arr]
        both = ~np.isnan(before) & ~np.isnan(after)
        diff = after[both] - before[both]
        result = mean_interval(diff, n_resamples=n_boot, seed=seed)
        entry: dict[str, Any] = {"n": int(both.sum()), "mean_a": _mean(before[both]),
                                 "mean_b": _mean(after[both]),
                                 "difference": {"value": finite_or_none(result["mean"]),
                                                "low": finite_or_none(result["low"]),
                                                "high": finite_or_none(result["high"]),
                                                "method": result["method"]}}
        if target in SHARE_TARGETS and both.any():
            threshold = thresholds.get(target, DEFAULT_THRESHOLD)
            up = (before[both] < threshold) & (after[both] >= threshold)
            down = (before[both] >= threshold) & (after[both] < threshold)
            flips = int(up.sum() + down.sum())
            low, high = wilson_interval(flips, both.sum())
            entry["flips"] = {"share": flips / both.sum(), "low": finite_or_none(low), "high": finite_or_none(high),
                              "up": int(up.sum()), "down": int(down.sum()),
                              "threshold": threshold}
        order = np.argsort(-np.abs(diff), kind="stable")[:top]
        entry["top_movers"] = [{"id": ids[both][k], "a": float(before[both][k]),
                                "b": float(after[both][k]), "change": float(diff[k])}
                               for k in order]
        out["targets"][target] = entry
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


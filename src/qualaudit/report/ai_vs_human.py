"""AI vs human, like for like: the raw difference of every score beside one adjusted for the
mix of conversations each side handles (direct standardisation over strata).

Bots take the easy chats and humans the escalated ones, so raw averages mislead. Strata come
from a column the user names (`strata=`, any metadata key such as `intent`) or from topic
clusters of the opening customer turns (`topics.topic_strata`). Both groups are reweighted
to one reference mix, by default the pooled mix of both; strata where only one group has
conversations are listed as not comparable and left out, never extrapolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import standardized_difference
from ..schema import ROW_TARGETS
from .cohorts import clusters_of
from .table import ScoreTable


def ai_vs_human(table: ScoreTable, strata: np.ndarray | None, stratum_names: Sequence[str],
                *, strata_source: str, reference: Mapping[str, float] | None = None,
                seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Per target, AI minus human: raw and adjusted differences with bootstrap intervals,
    the strata table, the strata that are not comparable, and a mix-effect sentence where
    raw and adjusted differ in sign.

    Args:
        strata: (N,) stratum code per row of `table` (-1: no stratum, left out of the
            adjusted difference and counted); None: one stratum (nothing to adjust for).
        stratum_names: the name of each code.
        strata_source: how strata were made, said in the report.
        reference: weights per stratum name for the reference mix (default: pooled).
    """
    agent = table.labels("agent_type")
    is_ai, is_human = agent == "ai", agent == "human"
    out: dict[str, Any] = {"strata_source": strata_source, "n_ai": int(is_ai.sum()),
                           "n_human": int(is_human.sum()),
                           "left_out": {"other agent types (mixed, unknown, missing)":
                                        int((~is_ai & ~is_human).sum())},
                           "targets": {}, "notes": [],
                           "reference": "pooled mix of both groups" if reference is None
                           else "user-given mix"}
    if not is_ai.any() or not is_human.any():
        out["notes"].append("AI vs human needs conversations of both agent types "
                            f"(found {out['n_ai']} ai, {out['n_human']} human)")
        return out
    codes = np.zeros(table.n, dtype=np.int64) if strata is None else np.asarray(strata)
    names = ["all conversations"] if strata is None else list(stratum_names)
    if strata is None:
        out["notes"].append("no strata given (--strata KEY or --transcripts for topic "
                            "clusters): the adjusted difference equals the raw one")
    without = codes < 0
    if without.any():
        out["left_out"]["no stratum"] = int((without & (is_ai | is_human)).sum())
    use = (is_ai | is_human) & ~without
    weights = None
    if reference is not None:
        unknown = sorted(set(reference) - set(names))
        if unknown:
            out["notes"].append(f"reference mix names unknown strata {unknown}: ignored")
        weights = np.array([float(reference.get(name, 0.0)) for name in names])
    clusters = clusters_of(table, np.flatnonzero(use))  # None without customer ids
    out["clustered_by_customer"] = clusters is not None
    for target in ROW_TARGETS:
        result = standardized_difference(table.scores[target][use], is_ai[use], codes[use],
                                         reference=weights, clusters=clusters,
                                         n_resamples=n_boot, seed=seed)
        for entry in result["strata"]:
            entry["name"] = names[entry["stratum"]]
        result["not_comparable"] = [names[c] for c in result["not_comparable"]]
        result["mix_effect"] = mix_effect_sentence(target, result["raw"]["value"],
                                                   result["adjusted"]["value"])
        out["targets"][target] = result
    return out


def mix_effect_sentence(target: str, raw: float, adjusted: float) -> str | None:
    """A sentence when the raw and the adjusted difference point different ways, else None."""
    if not np.isfinite(raw) or not np.isfinite(adjusted) or raw * adjusted >= 0:
        return None
    raw_side = "AI higher" if raw > 0 else "AI lower"
    adjusted_side = "AI higher" if adjusted > 0 else "AI lower"
    return (f"Mix effect on {target}: the raw difference ({raw:+.3f}, {raw_side}) and the "
            f"like-for-like difference ({adjusted:+.3f}, {adjusted_side}) point different ways: "
            "the two groups handle different kinds of conversation, and the raw figure "
            "reflects that mix, not how well each handles the same kind.")

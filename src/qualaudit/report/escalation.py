"""Escalation timing of AI conversations: how often escalation became needed (the running
escalation estimate reached 0.5: `escalation_turn`), and how many AI agent turns followed
that turn before a human took over (a later agent turn with `agent_type` human) or the
conversation ended: how long a bot kept going after it should have stopped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics import wilson_interval
from .table import ScoreTable

HISTOGRAM_CAP = 10  # turns at or above this are counted together ("10+")


def escalation_timing(table: ScoreTable,
                      from_transcripts: Mapping[str, tuple[float, float]] | None = None,
                      ) -> dict[str, Any]:
    """Counts, the share escalation became needed (Wilson interval), and the distribution of
    AI turns after the escalation turn, from per-turn rows and/or the transcripts."""
    ai = table.is_ai()
    needed = ai & ~np.isnan(table.escalation_turn)
    kept, handed = table.kept_going.copy(), table.handed_off.copy()
    if from_transcripts:
        position = {tid: i for i, tid in enumerate(table.ids) if tid in from_transcripts}
        for tid, i in position.items():
            if np.isnan(kept[i]):
                kept[i], handed[i] = from_transcripts[tid]
    n_ai, n_needed = int(ai.sum()), int(needed.sum())
    low, high = wilson_interval(n_needed, n_ai)
    out: dict[str, Any] = {
        "n_ai": n_ai, "n_escalation_needed": n_needed,
        "share_needed": {"value": n_needed / n_ai if n_ai else None,
                         "low": None if np.isnan(low) else low,
                         "high": None if np.isnan(high) else high},
        "sources": {"per_turn_rows": table.per_turn_rows,
                    "transcripts": len(from_transcripts or {})},
    }
    timed = needed & ~np.isnan(kept)
    out["n_timed"] = int(timed.sum())
    if n_needed and not timed.any():
        out["note"] = ("turn-by-turn agent types are needed for timing: score with "
                       "`qualaudit score --per-turn`, or pass --transcripts")
        return out
    if not timed.any():
        return out
    turns = kept[timed]
    capped = np.minimum(turns, HISTOGRAM_CAP).astype(int)
    counts = np.bincount(capped, minlength=HISTOGRAM_CAP + 1)
    out["histogram"] = [{"turns": f"{k}+" if k == HISTOGRAM_CAP else str(k), "count": int(c)}
                        for k, c in enumerate(counts)]
    out["median_turns"] = float(np.median(turns))
    out["mean_turns"] = float(turns.mean())
    out["handed_off"] = int(handed[timed].sum())
    out["not_handed_off"] = int(out["n_timed"] - out["handed_off"])
    out["n_untimed"] = n_needed - out["n_timed"]
    return out

"""Synthetic score rows and transcripts, for the demo report, the benchmarks and the tests.

SYNTHETIC: nothing here comes from a real conversation or a real model run. The rows look
like `qualaudit score` output (schema 1.1) and carry what a report needs: agent types,
channels, teams, intents, customers, start and end times over weeks, a model change, and
planted effects to find: AI handles the easy intents more often (a mix effect: AI is behind
within every intent, yet ahead on raw averages), AI resolution falls from `decline_week` on, and
bots keep answering for a few turns after escalation becomes needed.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

# intent: (resolution rate for humans, AI's difference within the intent, share of AI, opening)
INTENTS: dict[str, tuple[float, float, float, str]] = {
    "password_reset": (0.92, -0.04, 0.85, "I forgot my password and the reset link never arrives"),
    "order_status": (0.88, -0.04, 0.80, "Where is my order, the tracking page shows nothing"),
    "billing_dispute": (0.55, -0.04, 0.25, "I was charged twice on my invoice and want a refund"),
    "technical_outage": (0.45, -0.04, 0.15, "The service is down and my whole team cannot work"),
}
CHANNELS = ("chat", "email", "voice")
START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday


@dataclass(frozen=True)
class SyntheticSpec:
    """How many rows over how many weeks, and the planted effects."""

    n: int = 5000
    weeks: int = 26
    seed: int = 0
    decline_week: int | None = 20  # AI resolution falls by `decline` from this week on
    decline: float = 0.12
    model_change_week: int | None = 13
    per_turn_share: float = 0.5  # rows that carry per-turn outputs (escalation timing)


def synthetic_rows(spec: SyntheticSpec = SyntheticSpec()) -> Iterator[dict[str, Any]]:
    """SYNTHETIC score rows, one per conversation, in time order."""
    rng = np.random.default_rng(spec.seed)
    intents = list(INTENTS)
    seconds = spec.weeks * 7 * 86400
    offsets = np.sort(rng.uniform(0, seconds, spec.n))
    for i, offset in enumerate(offsets):
        intent = intents[int(rng.integers(0, len(intents)))]
        base, edge, ai_share, _ = INTENTS[intent]
        ai = rng.random() < ai_share
        week = int(offset // (7 * 86400))
        p_resolved = base + (edge if ai else 0.0)
        if ai and spec.decline_week is not None and week >= spec.decline_week:
            p_resolved -= spec.decline
        resolution = float(np.clip(rng.beta(20 * p_resolved + 1, 20 * (1 - p_resolved) + 1), 0, 1))
        escalation = float(np.clip(rng.beta(2, 6) + (0.35 if base < 0.6 else 0.0), 0, 1))
        n_turns = int(rng.integers(4, 14))
        escalation_turn = int(rng.integers(1, n_turns - 1)) if escalation >= 0.5 else None
        started = START + timedelta(seconds=float(offset))
        minutes = rng.gamma(2.0, 1.0) if ai else rng.gamma(4.0, 2.75)
        version = "0.4" if spec.model_change_week is not None and week >= spec.model_change_week \
            else "0.3"
        row: dict[str, Any] = {
            "id": f"syn-{i:07d}", "agent_type": "ai" if ai else "human",
            "resolution": resolution,
            "satisfaction": float(np.clip(resolution - 0.1 + rng.normal(0, 0.1), 0, 1)),
            "empathy": float(np.clip(rng.normal(0.45 if ai else 0.55, 0.15), 0, 1)),
            "repeat_inquiry": float(np.clip(1 - resolution + rng.normal(0, 0.1), 0, 1)),
            "escalation": escalation,
            "resolution_dist": _dist(resolution), "satisfaction_dist": _dist(resolution),
            "escalation_turn": escalation_turn,
            "evidence": {t: [{"index": int(rng.integers(0, n_turns)), "role": "agent",
                              "contribution": -0.4}] for t in
                         ("resolution", "satisfaction", "empathy", "repeat_inquiry", "escalation")},
            "n_turns": n_turns, "truncated": None,
            "model": {"name": "default", "version": version, "weights_sha256": f"{version:0<64}",
                      "trained": True, "precision": "fp32"},
            "metadata": {"channel": CHANNELS[int(rng.integers(0, 3))],
                         "team": "bot" if ai else f"team-{int(rng.integers(1, 4))}",
                         "intent": intent, "customer_id": f"c-{int(rng.integers(0, spec.n // 3 + 1))}",
                         "started_at": started.isoformat().replace("+00:00", "Z"),
                         "ended_at": (started + timedelta(minutes=float(minutes))).isoformat()
                         .replace("+00:00", "Z")},
            "schema_version": "1.1",
        }
        if rng.random() < spec.per_turn_share:
            row["turns"] = _turns(row)
        yield row


def synthetic_transcript(row: dict[str, Any]) -> dict[str, Any]:
    """A SYNTHETIC transcript (JSONL "turns" shape) for a synthetic row: its intent's opening
    line, then turns that say who answered (the same hand-off as the row's per-turn output)."""
    turns = []
    for turn in _turns(row):
        text = (INTENTS[row["metadata"]["intent"]][3] if turn["index"] == 0
                else f"Synthetic turn {turn['index']} of {row['id']}.")
        entry = {"role": turn["role"], "text": text}
        if turn["agent_type"]:
            entry["agent_type"] = turn["agent_type"]
        turns.append(entry)
    agent_type = "mixed" if any(t.get("agent_type") == "human" for t in turns) \
        and row["agent_type"] == "ai" else row["agent_type"]
    return {"id": row["id"], "agent_type": agent_type, "turns": turns}


def write_jsonl(rows: Iterator[dict[str, Any]], path: str | Path) -> int:
    """Writes rows as JSON Lines; returns how many."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            count += 1
    return count


def _dist(p: float) -> list[float]:
    low, high = (1 - p) / 2, p / 2
    return [low, low, 0.0, high, high] if not math.isnan(p) else [0.2] * 5


def _turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-turn roles and agent types: an AI conversation whose escalation became needed is
    handed to a human 1, 3 or 5 turns later in 6 of 10 cases (chosen by its id's checksum, so
    the row and its transcript agree)."""
    ai, escalation_turn = row["agent_type"] == "ai", row["escalation_turn"]
    check = zlib.crc32(row["id"].encode())
    handoff = None
    if ai and escalation_turn is not None and check % 10 < 6:
        handoff = escalation_turn + 1 + 2 * (check // 10 % 3)
    turns = []
    for k in range(row["n_turns"]):
        role = "customer" if k % 2 == 0 else "agent"
        who = None
        if role == "agent":
            who = "human" if (not ai or (handoff is not None and k >= handoff)) else "ai"
        turns.append({"index": k, "role": role, "agent_type": who})
    return turns

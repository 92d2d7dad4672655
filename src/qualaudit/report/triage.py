"""Triage queues: per target, the conversations past a threshold the user sets (low
resolution, satisfaction or empathy; high repeat inquiry or escalation), worst first, each
with its evidence turns and, given the transcripts, their text (personal data redacted by
default: `qualaudit.redact`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..redact import redact_text
from ..schema import ROW_TARGETS
from .cohorts import DEFAULT_THRESHOLD, WORSE
from .table import ScoreTable

QUEUE_SIZE = 20  # conversations listed per queue (the queue's full size is counted)
SHOWN_TEXT_CHARS = 600  # of one evidence turn's text; a longer one is cut, marked with …


def select_queues(table: ScoreTable, thresholds: Mapping[str, float],
                  size: int = QUEUE_SIZE) -> dict[str, dict[str, Any]]:
    """Per target: how many conversations are past the threshold, and the worst `size`
    (id, score, agent type), without evidence yet (`attach_evidence` adds it)."""
    agent = table.labels("agent_type")
    queues = {}
    for target in ROW_TARGETS:
        threshold = thresholds.get(target, DEFAULT_THRESHOLD)
        values = table.scores[target]
        worse = WORSE[target]
        with np.errstate(invalid="ignore"):
            past = (values >= threshold) if worse > 0 else (values <= threshold)
        index = np.flatnonzero(past)
        order = index[np.argsort(worse * -values[index], kind="stable")][:size]
        queues[target] = {
            "threshold": threshold, "direction": "at or above" if worse > 0 else "at or below",
            "n_past_threshold": int(index.size),
            "items": [{"id": table.ids[i], "score": float(values[i]), "agent_type": agent[i],
                       "evidence": []} for i in order]}
    return queues


def evidence_wanted(queues: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, set[int]]:
    """id -> evidence turn indices of the queued conversations (from their score rows)."""
    wanted: dict[str, set[int]] = {}
    for target, queue in queues.items():
        for item in queue["items"]:
            for ev in _evidence(rows.get(item["id"]), target):
                wanted.setdefault(item["id"], set()).add(int(ev["index"]))
    return wanted


def attach_evidence(queues: dict[str, Any], rows: Mapping[str, Mapping[str, Any]],
                    turn_text: Mapping[str, Mapping[int, str]] | None, redact: bool) -> None:
    """Each queued item gets its evidence turns (index, role, contribution) and their text
    when the transcripts were read, redacted unless `redact` is False."""
    for target, queue in queues.items():
        for item in queue["items"]:
            texts = (turn_text or {}).get(item["id"], {})
            item["evidence"] = []
            for ev in _evidence(rows.get(item["id"]), target):
                text = texts.get(int(ev["index"]))
                if text is not None and redact:
                    text = redact_text(text)
                if text is not None and len(text) > SHOWN_TEXT_CHARS:
                    text = text[: SHOWN_TEXT_CHARS - 1] + "…"
                item["evidence"].append({"index": int(ev["index"]), "role": ev.get("role"),
                                         "contribution": ev.get("contribution"), "text": text})


def _evidence(row: Mapping[str, Any] | None, target: str) -> list[Mapping[str, Any]]:
    evidence = (row or {}).get("evidence") or {}
    items = (evidence.get(target) or []) if isinstance(evidence, Mapping) else []
    return [e for e in items if isinstance(e, Mapping) and e.get("index") is not None]

"""What a report reads from the transcripts file (`--transcripts`), in one streamed pass:
opening customer turns (for topic strata), who answered each turn after an escalation
(for escalation timing), and the text of the evidence turns of the triage queues."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import iter_records
from .table import turns_after_escalation
from .topics import opening_text

logger = logging.getLogger(__name__)


@dataclass
class TranscriptFacts:
    """`openings` id -> opening text; `timing` id -> (AI turns after escalation, handed off);
    `turn_text` id -> {input turn index: text}; `rejected` transcripts that did not read."""

    openings: dict[str, str] = field(default_factory=dict)
    timing: dict[str, tuple[float, float]] = field(default_factory=dict)
    turn_text: dict[str, dict[int, str]] = field(default_factory=dict)
    read: int = 0
    rejected: int = 0
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)


def read_transcript_facts(path: str | Path, *, openings: bool,
                          escalation_turns: Mapping[str, int],
                          text_turns: Mapping[str, Set[int]]) -> TranscriptFacts:
    """One pass over a transcripts file (any input `qualaudit score` reads).

    Args:
        openings: keep every conversation's opening customer text.
        escalation_turns: id -> escalation turn of the AI conversations to time.
        text_turns: id -> the input turn indices whose text to keep (triage evidence).
    """
    facts = TranscriptFacts()
    for record in iter_records(str(path)):
        if isinstance(record, InputError):
            facts.rejected += 1
            if len(facts.rejected_examples) < 5:
                facts.rejected_examples.append({"source": record.source, "line": record.line,
                                                "reason": record.reason})
            continue
        facts.read += 1
        if openings:
            facts.openings[record.id] = opening_text(record)
        if record.id in escalation_turns:
            facts.timing[record.id] = turns_after_escalation(
                [(t.index, t.role, t.agent_type) for t in record.turns],
                escalation_turns[record.id])
        wanted = text_turns.get(record.id)
        if wanted:
            facts.turn_text[record.id] = {t.index: t.text for t in record.turns if t.index in wanted}
    if facts.rejected:
        logger.warning("%d transcript(s) of %s could not be read (first: %s)", facts.rejected,
                       path, facts.rejected_examples[0])
    return facts

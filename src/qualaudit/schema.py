"""The types passed between modules: transcripts in, scores out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .heads import HEAD_SPECS

Role = Literal["customer", "agent", "system"]
AgentType = Literal["ai", "human", "mixed", "unknown"]

ROLES: tuple[str, ...] = ("customer", "agent", "system")
AGENT_TYPES: tuple[str, ...] = ("ai", "human", "mixed", "unknown")
# 1.0: the first row format; 1.1 adds `model.precision` (and, in CSV and Parquet only, one
# `metadata.<key>` column per metadata key). Readers accept every 1.x.
SCHEMA_VERSION = "1.2"


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, with its role already normalised.

    `index` is the turn's 0-based position in the input (empty turns included), so that
    evidence and `escalation_turn` point at the turn the user sees in their own export.
    `agent_type` says who wrote an agent turn: as given per turn (a conversation handed over
    from AI to a human), else the transcript's when that is "ai" or "human". Customer and
    system turns, and agent turns of a "mixed" or "unknown" transcript given no value of
    their own, have None: nothing says who answered them.
    """

    role: Role
    text: str
    timestamp: str | None = None
    agent_type: AgentType | None = None
    speaker: str | None = None
    index: int = 0


@dataclass(frozen=True)
class Transcript:
    """A whole conversation. `agent_type` labels it for comparison and is never a model input.

    `n_input_turns` counts every turn of the input, including empty ones that were dropped;
    `source` and `line` say where it was read from, for error messages.
    """

    id: str
    turns: tuple[Turn, ...]
    agent_type: AgentType = "unknown"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    n_input_turns: int = 0
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    @property
    def scored_turns(self) -> tuple[Turn, ...]:
        """Customer and agent turns: the ones the model reads (system turns are kept, not scored)."""
        return tuple(t for t in self.turns if t.role != "system")


@dataclass(frozen=True)
class Evidence:
    """A turn that drove a score: `contribution` is the change in the target's calibrated logit
    (score units for empathy) when the turn is left out of the conversation pooling."""

    index: int
    role: Role
    contribution: float


@dataclass(frozen=True)
class TurnScore:
    """Per-turn outputs. Fields that do not apply to the turn's role are None.

    `escalation_signal` is the strongest of `escalation_signals` (dissatisfied, complaint,
    asks for a human); `breakdown` is the chance that an agent turn failed the conversation
    (off-topic, contradictory, not an answer); `escalation_running` is the conversation's escalation estimate after
    this turn (it never goes down)."""

    index: int
    role: Role
    agent_type: AgentType | None
    empathy: float | None = None
    empathy_levels: Mapping[str, list[float]] | None = None
    solution_given: float | None = None
    escalation_signal: float | None = None
    escalation_signals: Mapping[str, float] | None = None
    solution_confirmed: float | None = None
    breakdown: float | None = None
    escalation_running: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """Which model wrote a row, and how it ran: `precision` is "fp32" or "bf16" (the encoder's
    arithmetic; "fp32+int8" for the int8-quantized encoder), so that rows of two runs that
    differ can be told apart (added in schema 1.1)."""

    name: str
    version: str
    weights_sha256: str
    trained: bool
    precision: str = "fp32"


@dataclass(frozen=True)
class TranscriptScore:
    """The scores of one transcript: one output row (see README, "Output rows")."""

    id: str
    agent_type: AgentType
    resolution: float
    satisfaction: float
    empathy: float | None
    repeat_inquiry: float
    escalation: float
    resolution_dist: list[float]
    satisfaction_dist: list[float]
    escalation_turn: int | None
    evidence: Mapping[str, list[Evidence]]
    turns: list[TurnScore]
    n_turns: int
    truncated: Mapping[str, Any] | None
    model: ModelInfo
    metadata: Mapping[str, Any] = field(default_factory=dict)
    language: str = "und"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, per_turn: bool = True) -> dict[str, Any]:
        """The output row as plain JSON-ready data; `turns` is left out unless `per_turn`."""
        row = asdict(self)
        row["schema_version"] = SCHEMA_VERSION
        if not per_turn:
            del row["turns"]
        return row


@dataclass(frozen=True)
class OutputColumn:
    """One field of an output row. `kind` says how flat tables (CSV, Parquet) hold it:
    "string", "float", "int", or "json" (a nested value, stored there as JSON text)."""

    name: str
    kind: Literal["string", "float", "int", "json"]
    description: str


# The conversation scores a row reports, in row order; what else each brings (a `_dist` for
# a 5-level head, a `_turn` for a running estimate) follows from its head spec.
ROW_TARGETS: tuple[str, ...] = ("resolution", "satisfaction", "empathy", "repeat_inquiry",
                                "escalation")
_TARGET_TEXT = {
    "resolution": "P(resolved) = P(level > 0) of the calibrated `resolution_dist`",
    "satisfaction": "P(satisfied) = P(level > 0) of the calibrated `satisfaction_dist`",
    "empathy": "mean over agent turns of the expected EPITOME levels of emotional reactions, "
               "interpretations and explorations, / 6: a graded score in [0, 1]; null "
               "without agent turns",
    "repeat_inquiry": "P(the customer contacts again about the same matter)",
    "escalation": "P(a human or higher tier was needed at some turn): a noisy-OR of per-turn "
                  "hazards",
}


def _output_columns() -> tuple[OutputColumn, ...]:
    spec = {s.target: s for s in HEAD_SPECS.values()}  # later versions of a target win
    scores = [OutputColumn(t, "float", _TARGET_TEXT[t]) for t in ROW_TARGETS]
    dists = [OutputColumn(f"{t}_dist", "json", "calibrated probabilities of the 5-level scale "
                          "-2..2") for t in ROW_TARGETS
             if spec[t].level == "conversation" and spec[t].kind == "categorical"]
    running = [OutputColumn(f"{t}_turn", "int", "the first input turn at which the running "
                            "estimate reaches 0.5; null below 0.5") for t in ROW_TARGETS
               if spec[t].pooling == "causal"]
    return (
        OutputColumn("id", "string", "the transcript id"),
        OutputColumn("agent_type", "string", "ai, human, mixed or unknown: a label, never a "
                     "model input"),
        *scores, *dists, *running,
        OutputColumn("evidence", "json", "per target, the turns that moved its logit most when "
                     "left out of the pooling"),
        OutputColumn("turns", "json", "per scored turn outputs (only with --per-turn)"),
        OutputColumn("n_turns", "int", "turns in the input, empty and system turns included"),
        OutputColumn("truncated", "json", "null, or what was cut to fit the limits"),
        OutputColumn("model", "json", "name, version, weights_sha256, trained, precision"),
        OutputColumn("metadata", "json", "the transcript's metadata, as plain JSON"),
        OutputColumn("language", "string", "the language detected in the customer and agent "
                     "turns (ISO 639-1), und when the text is too short to tell (since 1.2)"),
        OutputColumn("warnings", "json", "what the reader should know about these scores, e.g. "
                     "a language the model was not trained on (since 1.2)"),
        OutputColumn("schema_version", "string", "the row format's version, 1.x"),
    )


OUTPUT_COLUMNS: tuple[OutputColumn, ...] = _output_columns()
ROW_FIELDS: tuple[str, ...] = tuple(c.name for c in OUTPUT_COLUMNS)


def row_columns(per_turn: bool) -> list[str]:
    """The fields of a row, in order; `turns` only `per_turn`."""
    return [c for c in ROW_FIELDS if per_turn or c != "turns"]


def to_dataframe(scores: list[TranscriptScore], per_turn: bool = False):
    """Results as a pandas DataFrame, one row per transcript, nested fields kept as objects."""
    import pandas as pd

    rows = [s.to_dict(per_turn=per_turn) for s in scores]
    return pd.DataFrame(rows, columns=row_columns(per_turn))

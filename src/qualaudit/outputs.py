"""Scores from logits: the forward pass's raw output becomes calibrated probabilities, each
score's evidence turns and one `TranscriptScore` row per transcript. No torch is imported:
tensors are only moved to numpy here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import TurnWindows
from .calibration import Calibration
from .evidence import mean_contributions, target_logit, top_evidence
from .heads import HeadSpec, empathy_score, p_positive
from .language import detect_language, language_warnings
from .schema import Evidence, ModelInfo, Transcript, TranscriptScore, TurnScore

if TYPE_CHECKING:
    from .model import ConversationGroup, ModelOutput

CONVERSATION_TARGETS = ("resolution", "satisfaction", "repeat_inquiry", "escalation")


def score_rows(output: ModelOutput, transcripts: Sequence[Transcript], windows: TurnWindows,
               specs: Sequence[HeadSpec], calibration: Calibration, info: ModelInfo,
               top_k: int = 3, dropped: Sequence[list[int] | None] | None = None,
               languages: Sequence[str] = ("en",)) -> list[TranscriptScore]:
    """One row per transcript of a forward pass (`QualityModel.forward(windows,
    with_evidence=True)`), in the windows' order. `dropped[i]` is what `within_max_turns`
    left out of transcript i (recorded in its `truncated`). A transcript detected in none of
    the model's `languages` gets a `warnings` entry."""
    by_target = {s.target: s for s in specs}
    turn_probs = turn_probabilities(output.turn_logits, specs, calibration)
    conversation: list[dict[str, Any]] = [{} for _ in transcripts]
    for group in output.groups:
        for i, conv in zip(group.rows, conversation_scores(group, by_target, calibration)):
            conversation[i] = conv
    starts = np.cumsum([0] + windows.turn_counts)
    rows = []
    for i, transcript in enumerate(transcripts):
        a, b = starts[i], starts[i + 1]
        truncated: dict[str, Any] = {}
        for key, cuts in (("turn_tokens", windows.turn_truncated[a:b]),
                          ("turn_chars", windows.turn_chars_cut[a:b])):
            indices = [t.index for t, cut in zip(transcript.scored_turns, cuts) if cut]
            if indices:
                truncated[key] = indices
        if dropped is not None and dropped[i] is not None:
            truncated["turns_dropped"] = dropped[i]
        language = detect_language(transcript)
        rows.append(assemble(transcript, {k: v[a:b] for k, v in turn_probs.items()},
                             conversation[i], by_target, info, top_k, truncated or None,
                             language, language_warnings(transcript.id, language, languages)))
    return rows


def turn_probabilities(turn_logits: dict[str, Any], specs: Sequence[HeadSpec],
                       calibration: Calibration) -> dict[str, np.ndarray]:
    """{target: calibrated probabilities} of every turn head for every window (role
    filtering comes later)."""
    return {spec.target: calibration.predict_proba(
                spec.name, turn_logits[spec.name].cpu().numpy().astype(np.float64), spec.binary)
            for spec in specs if spec.level != "conversation"}


def conversation_scores(group: ConversationGroup, specs: dict[str, HeadSpec],
                        calibration: Calibration) -> list[dict[str, Any]]:
    """Per conversation of a group: the calibrated probabilities of each conversation target,
    each turn's contribution to its logit (see `evidence.logit_contributions`), and the
    calibrated running escalation estimate. Calibration and evidence run once per group on
    all its rows, not once per conversation: their per-call overhead would otherwise
    dominate on a GPU."""
    result, counts = group.output, group.counts
    rows = range(len(counts))
    out: list[dict[str, Any]] = [{"probs": {}, "contributions": {}} for _ in rows]
    for target in CONVERSATION_TARGETS:
        spec = specs[target]
        logits = result.logits[spec.name].cpu().numpy()  # (B, *shape)
        probs = calibration.predict_proba(spec.name, logits.astype(np.float64), spec.binary)
        full = target_logit(calibration, spec, logits)  # (B,)
        left_out = target_logit(calibration, spec, result.leave_one_out[spec.name].cpu().numpy())
        contributions = full[:, None] - left_out  # (B, T)
        # As evidence.logit_contributions: changes within float32 rounding are no change.
        moved = np.abs(contributions) > 1e-6 * np.maximum(1.0, np.abs(full))[:, None]
        contributions = np.where(moved, contributions, 0.0)
        for b in rows:
            out[b]["probs"][target] = probs[b]
            # With one turn, leaving it out leaves nothing to compare with: no evidence.
            out[b]["contributions"][target] = (contributions[b, :counts[b]] if counts[b] > 1
                                               else np.zeros(1))
    spec = specs["escalation"]
    running = calibration.predict_proba(
        spec.name, result.running[spec.name].cpu().numpy().astype(np.float64), True)
    for b in rows:
        out[b]["running"] = running[b, :counts[b]]
    return out


def assemble(transcript: Transcript, turn_out: dict[str, np.ndarray], conv: dict[str, Any],
             specs: dict[str, HeadSpec], info: ModelInfo, top_k: int,
             truncated: dict[str, Any] | None, language: str = "und",
             warnings: list[str] | None = None) -> TranscriptScore:
    """The output row of one transcript from its calibrated outputs."""
    turns = transcript.scored_turns
    roles = [t.role for t in turns]
    indices = [t.index for t in turns]

    scores: dict[str, Any] = {}
    evidence: dict[str, list[Evidence]] = {}
    for target in CONVERSATION_TARGETS:
        probs = conv["probs"][target]
        if specs[target].binary:
            scores[target] = float(probs)
        else:
            scores[f"{target}_dist"] = probs.tolist()
            scores[target] = float(p_positive(probs))
        evidence[target] = top_evidence(conv["contributions"][target], indices, roles, top_k)

    running = conv["running"]
    escalation_turn = None
    if scores["escalation"] >= 0.5:
        escalation_turn = indices[int(np.argmax(running >= 0.5))]

    agent = np.array([r == "agent" for r in roles])
    turn_empathy = empathy_score(turn_out["empathy"]) if "empathy" in turn_out else None
    empathy = None
    if turn_empathy is not None and agent.any():
        empathy = float(turn_empathy[agent].mean())
        contributions = mean_contributions(turn_empathy[agent])
        evidence["empathy"] = [] if contributions is None else top_evidence(
            contributions, [i for i, a in zip(indices, agent) if a], ["agent"] * int(agent.sum()),
            top_k)

    turn_scores = []
    for k, turn in enumerate(turns):
        fields: dict[str, Any] = {"escalation_running": float(running[k])}
        for target, probs in turn_out.items():
            head = specs[target]
            if (head.level == "agent_turn") != (turn.role == "agent"):
                continue
            if target == "empathy":
                fields["empathy"] = float(turn_empathy[k])
                fields["empathy_levels"] = dict(zip(head.labels, probs[k].tolist()))
            elif head.labels:  # several independent signals: report each and the strongest
                fields[f"{target}s"] = dict(zip(head.labels, probs[k].tolist()))
                fields[target] = float(probs[k].max())
            else:
                fields[target] = float(probs[k])
        turn_scores.append(TurnScore(turn.index, turn.role, turn.agent_type, **fields))

    return TranscriptScore(
        id=transcript.id, agent_type=transcript.agent_type,
        resolution=scores["resolution"], satisfaction=scores["satisfaction"],
        empathy=empathy, repeat_inquiry=scores["repeat_inquiry"],
        escalation=scores["escalation"], resolution_dist=scores["resolution_dist"],
        satisfaction_dist=scores["satisfaction_dist"], escalation_turn=escalation_turn,
        evidence=evidence, turns=turn_scores, n_turns=transcript.n_input_turns,
        truncated=truncated, model=info, metadata=dict(transcript.metadata),
        language=language, warnings=list(warnings or ()),
    )

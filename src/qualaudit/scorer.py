"""The batch scorer: transcripts in, calibrated scores with evidence out, in input order."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .batching import WindowBuilder, collate, token_budget_batches
from .errors import InputError, ModelLoadError, QualauditError
from .evidence import logit_contributions, mean_contributions, top_evidence
from .heads import empathy_score, p_positive
from .io import read_transcripts
from .model import QualityModel, default_model_path
from .schema import ROLES, Evidence, ModelInfo, Transcript, TranscriptScore, TurnScore

CONVERSATION_TARGETS = ("resolution", "satisfaction", "repeat_inquiry", "escalation")
DEFAULT_MAX_TURNS = 1000
Precision = Literal["fp32", "bf16"]

log = logging.getLogger("qualaudit.scorer")


@dataclass
class ScoringStats:
    """Running totals of what the scorer has read (for progress bars and summaries); `tokens`
    counts the encoder's real tokens (turn, context and special tokens, no padding);
    `oom_splits` the batches split in two after running out of memory."""

    transcripts: int = 0
    turns: int = 0
    tokens: int = 0
    oom_splits: int = 0


class Auditor:
    """Scores transcripts with a QualityModel.

    Turns of a chunk of transcripts are tokenized once, sorted by length into token-budget
    batches, encoded under `torch.inference_mode`, and scattered back; conversation heads run
    on groups of similar length; results come back in input order.

    Limits, each recorded in the row's `truncated` when it cuts anything: a transcript with
    more than `max_turns` scored turns (None: no limit) keeps its first half and last half
    of them (`turns_dropped`: the first and last input index left out); a turn's text is cut
    to `max_turn_chars` characters before tokenizing (`turn_chars`, see `WindowBuilder`) and
    its tokens to the model's `max_turn_tokens` (`turn_tokens`). A batch that runs out of
    memory is split in two and retried, and later batches stay under the size that fitted.

    Example:
        >>> auditor = Auditor.from_pretrained("models/default")
        >>> result = auditor.score({"id": "t1", "messages": [
        ...     {"role": "user", "content": "My card was charged twice."},
        ...     {"role": "assistant", "content": "Sorry about that! I've refunded it."}]})
        >>> result.resolution, result.evidence["resolution"][0].index
    """

    def __init__(self, model: QualityModel, *, device: str | torch.device | None = None,
                 precision: Precision = "fp32", max_batch_tokens: int = 8192,
                 chunk_turns: int = 2048, top_evidence: int = 3,
                 max_turns: int | None = DEFAULT_MAX_TURNS,
                 max_turn_chars: int | None = None) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if max_batch_tokens < 1 or chunk_turns < 1 or top_evidence < 0:
            raise ValueError("max_batch_tokens and chunk_turns must be >= 1, top_evidence >= 0")
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (or None), found {max_turns}")
        self.specs = {s.target: s for s in model.specs}
        missing = [t for t in CONVERSATION_TARGETS if t not in self.specs]
        if missing:
            raise ModelLoadError(f"the model has no conversation head for {missing}; an "
                                 "Auditor needs resolution, satisfaction, repeat_inquiry, escalation")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise QualauditError(f"device {str(self.device)!r} asked for, but CUDA is not "
                                 "available here; use device='cpu' (--device cpu)")
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.max_batch_tokens = max_batch_tokens
        self.chunk_turns = chunk_turns
        self.top_evidence = top_evidence
        self.max_turns = max_turns
        self.builder = WindowBuilder(model.tokenizer, model.config.max_turn_tokens,
                                     model.config.max_context_tokens, max_turn_chars)
        self._fitting_batch_tokens = max_batch_tokens  # lowered after running out of memory
        self.info = ModelInfo(model.config.name, model.config.version, model.weights_sha256,
                              trained=not model.config.untrained_heads)
        self.stats = ScoringStats()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **kwargs: Any) -> Auditor:
        """An Auditor for a saved model (directory or hub id); no path means the bundled default."""
        if path is None:
            path = default_model_path()
            if path is None:
                raise ModelLoadError(
                    "no default model is bundled with this qualaudit yet; pass a model "
                    "directory (`qualaudit init DIR` builds an untrained one for pipeline tests)")
        return cls(QualityModel.from_pretrained(path), **kwargs)

    # ------------------------------------------------------------------ public
    def score(self, x: Any, **reader_kwargs: Any) -> TranscriptScore | list[TranscriptScore]:
        """Score one transcript (a Transcript or a dict) or many (list, DataFrame, Dataset, file
        path): one TranscriptScore for one, a list in input order for many."""
        single = isinstance(x, (Transcript, dict))
        results = list(self.score_iter(x, **reader_kwargs))
        return results[0] if single else results

    def score_iter(self, source: Any, **reader_kwargs: Any) -> Iterator[TranscriptScore]:
        """Lazily score anything `qualaudit.io.read_transcripts` reads; memory stays bounded by
        `chunk_turns` turns however long the input is. Bad input raises InputError (filter it
        first with `qualaudit.io.iter_records` to skip bad transcripts instead)."""
        for chunk in self.score_chunks(source, **reader_kwargs):
            yield from chunk

    def score_chunks(self, source: Any, **reader_kwargs: Any) -> Iterator[list[TranscriptScore]]:
        """Like `score_iter`, one list per chunk of about `chunk_turns` turns: the unit that
        writers flush to disk at a time."""
        reader_kwargs.setdefault("on_error", "raise")
        return self.score_transcripts(read_transcripts(source, **reader_kwargs))

    def score_transcripts(self, transcripts: Iterable[Transcript]) -> Iterator[list[TranscriptScore]]:
        """Score transcripts already validated by `qualaudit.io` (`iter_records`,
        `read_transcripts`), one list per chunk of about `chunk_turns` turns."""
        transcripts = iter(transcripts)
        while True:
            chunk, dropped, n_turns = [], [], 0
            for transcript in transcripts:
                transcript, left_out = self._within_max_turns(transcript)
                chunk.append(transcript)
                dropped.append(left_out)
                n_turns += len(transcript.scored_turns)
                if n_turns >= self.chunk_turns:
                    break
            if not chunk:
                return
            yield self._score_chunk(chunk, dropped)

    def _within_max_turns(self, transcript: Transcript) -> tuple[Transcript, list[int] | None]:
        """The transcript with at most `max_turns` scored turns (the first and last halves), and
        the first and last input index of the turns left out (None when none is)."""
        scored = transcript.scored_turns
        if self.max_turns is None or len(scored) <= self.max_turns:
            return transcript, None
        head, tail = (self.max_turns + 1) // 2, self.max_turns // 2
        kept = scored[:head] + (scored[len(scored) - tail:] if tail else ())
        left_out = [scored[head].index, scored[len(scored) - tail - 1].index]
        return replace(transcript, turns=kept), left_out

    # --------------------------------------------------------------- internals
    @torch.inference_mode()
    def _score_chunk(self, chunk: list[Transcript],
                     dropped: list[list[int] | None] | None = None) -> list[TranscriptScore]:
        for transcript in chunk:  # cheap guards for Transcripts that skipped qualaudit.io
            if not transcript.scored_turns or any(t.role not in ROLES for t in transcript.turns):
                raise InputError("expected a transcript validated by qualaudit.io (canonical "
                                 "roles, at least one customer or agent turn)",
                                 transcript_id=transcript.id,
                                 hint="Read it with qualaudit.io.read_transcripts first")
        windows = self.builder.build(chunk)
        lengths = windows.lengths
        states = self._encode(windows, lengths)  # (N, H)
        is_agent = torch.tensor([t.role == "agent" for tr in chunk for t in tr.scored_turns],
                                dtype=torch.bool, device=self.device)
        turn_logits = self.model.turn_heads(states)
        features = self.model.turn_heads.features(turn_logits, is_agent)
        starts = np.cumsum([0] + [len(t.scored_turns) for t in chunk])
        conversation = self._conversation(states, features, is_agent, starts)
        turn_outputs = self._turn_outputs(turn_logits)

        self.stats.transcripts += len(chunk)
        self.stats.turns += len(lengths)
        self.stats.tokens += sum(lengths)
        results = []
        for i, transcript in enumerate(chunk):
            a, b = starts[i], starts[i + 1]
            truncated: dict[str, Any] = {}
            for key, cuts in (("turn_tokens", windows.turn_truncated[a:b]),
                              ("turn_chars", windows.turn_chars_cut[a:b])):
                indices = [t.index for t, cut in zip(transcript.scored_turns, cuts) if cut]
                if indices:
                    truncated[key] = indices
            if dropped and dropped[i] is not None:
                truncated["turns_dropped"] = dropped[i]
            results.append(self._assemble(
                transcript, {k: v[a:b] for k, v in turn_outputs.items()}, conversation[i],
                truncated or None))
        return results

    def _encode(self, windows, lengths: list[int]) -> torch.Tensor:
        hidden = self.model.encoder.config.hidden_size
        states = torch.empty((len(lengths), hidden), dtype=torch.float32, device=self.device)
        pad_id = self.model.tokenizer.pad_token_id or 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=self.precision == "bf16")
        pending = token_budget_batches(
            lengths, min(self.max_batch_tokens, self._fitting_batch_tokens))[::-1]
        while pending:
            idx = pending.pop()
            out_of_memory = False
            try:
                batch = collate(windows, idx, pad_id, self.model.uses_token_types)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with autocast:
                    states[torch.tensor(idx, device=self.device)] = self.model.encode_turns(**batch).float()
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not _is_out_of_memory(exc):
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the handler, so that the failed batch can be freed
                batch = None
                pending += self._split_after_out_of_memory(idx, lengths)[::-1]
        return states

    def _split_after_out_of_memory(self, idx: list[int], lengths: list[int]) -> list[list[int]]:
        """The two halves of a batch that ran out of memory; later batches stay under half its
        padded size. A single window that does not fit is an error."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        padded = len(idx) * max(lengths[i] for i in idx)
        if len(idx) == 1:
            raise QualauditError(
                f"out of memory encoding a single turn window of {padded} tokens on "
                f"{self.device}: free memory on the device, lower the model's max_turn_tokens "
                "and max_context_tokens, or score on another device (--device)")
        self._fitting_batch_tokens = min(self._fitting_batch_tokens, max(padded // 2, 1))
        self.stats.oom_splits += 1
        log.warning("out of memory encoding a batch of %d turn windows (%d padded tokens) on %s: "
                    "split it in two and retried; batches now stay under %d tokens",
                    len(idx), padded, self.device, self._fitting_batch_tokens)
        half = len(idx) // 2
        return [idx[:half], idx[half:]]

    def _conversation(self, states, features, is_agent, starts) -> list[dict[str, Any]]:
        """Conversation heads per transcript, run in groups of similar turn counts so that a
        10,000-turn transcript does not pad a chunk of short ones to its length."""
        counts = np.diff(starts)
        out: list[dict[str, Any]] = [{} for _ in counts]
        budget = max(self.chunk_turns, int(counts.max()))
        for group in token_budget_batches(counts.tolist(), budget):
            T = int(counts[group].max())
            index = torch.full((len(group), T), -1, dtype=torch.long)
            for row, i in enumerate(group):
                index[row, : counts[i]] = torch.arange(starts[i], starts[i + 1])
            index = index.to(self.device)
            mask = index >= 0
            safe = index.clamp(min=0)
            result = self.model.conversation_heads(
                states[safe], features[safe], is_agent[safe] & mask, mask, with_evidence=True)
            logits, loo, running = ({k: v.cpu().numpy() for k, v in part.items()} for part in
                                    (result.logits, result.leave_one_out, result.running))
            for row, i in enumerate(group):
                n = int(counts[i])
                out[i] = {"logits": {k: v[row] for k, v in logits.items()},
                          "loo": {k: v[row, :n] for k, v in loo.items()},
                          "running": {k: v[row, :n] for k, v in running.items()}}
        return out

    def _turn_outputs(self, turn_logits: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Calibrated per-turn probabilities for every window (role filtering comes later)."""
        cal = self.model.calibration
        return {spec.target: cal.predict_proba(
                    spec.name, turn_logits[spec.name].cpu().numpy().astype(np.float64), spec.binary)
                for spec in self.model.turn_heads.specs}

    def _assemble(self, transcript: Transcript, turn_out: dict[str, np.ndarray],
                  conv: dict[str, Any], truncated: dict[str, Any] | None) -> TranscriptScore:
        cal = self.model.calibration
        turns = transcript.scored_turns
        roles = [t.role for t in turns]
        indices = [t.index for t in turns]

        scores: dict[str, Any] = {}
        evidence: dict[str, list[Evidence]] = {}
        for target in CONVERSATION_TARGETS:
            spec = self.specs[target]
            logits = conv["logits"][spec.name]
            probs = cal.predict_proba(spec.name, logits.astype(np.float64), spec.binary)
            if spec.binary:
                scores[target] = float(probs)
            else:
                scores[f"{target}_dist"] = probs.tolist()
                scores[target] = float(p_positive(probs))
            # With one turn, leaving it out leaves nothing to compare with: no evidence.
            contributions = (logit_contributions(cal, spec, logits, conv["loo"][spec.name])
                             if len(turns) > 1 else np.zeros(1))
            evidence[target] = top_evidence(contributions, indices, roles, self.top_evidence)

        spec = self.specs["escalation"]
        running = cal.predict_proba(spec.name, conv["running"][spec.name].astype(np.float64), True)
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
                self.top_evidence)

        turn_scores = []
        for k, turn in enumerate(turns):
            fields: dict[str, Any] = {"escalation_running": float(running[k])}
            for target, probs in turn_out.items():
                head = self.specs[target]
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
            truncated=truncated, model=self.info, metadata=dict(transcript.metadata),
        )


def _is_out_of_memory(exc: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, and the plain RuntimeErrors other backends raise for it."""
    message = str(exc).lower()
    return (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in message
            or "can't allocate memory" in message)

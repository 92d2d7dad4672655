"""Turn windows (each turn with bounded preceding context), tokenized once, packed into
length-sorted token-budget batches; callers scatter results back by window position. Long
transcripts are cut here too (`within_max_turns`), the same way for scoring and training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate, chain

import torch

from .closing import closing_start
from .echo import echoes
from .schema import ROLES, Transcript


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a pair: prefix A middle B suffix.

    Read off the tokenizer by encoding a probe pair, so any HF tokenizer works without the
    per-model helpers that transformers 5 no longer exposes.
    """

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    type_a: int
    type_b: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> PairTemplate:
        probe_a, probe_b = "alpha", "omega"
        ids_a, ids_b = tokenizer([probe_a, probe_b], add_special_tokens=False)["input_ids"]
        enc = tokenizer(probe_a, probe_b)
        ids = enc["input_ids"]
        i = _find(ids, ids_a, 0)
        j = _find(ids, ids_b, i + len(ids_a))
        types = enc.get("token_type_ids") or [0] * len(ids)
        return cls(ids[:i], ids[i + len(ids_a):j], ids[j + len(ids_b):], types[i], types[j])


def _find(seq: list[int], sub: list[int], start: int) -> int:
    for k in range(start, len(seq) - len(sub) + 1):
        if seq[k:k + len(sub)] == sub:
            return k
    raise ValueError("cannot locate the probe tokens in the tokenizer's pair encoding")


@dataclass
class TurnWindows:
    """The encoder inputs of every scored turn of some transcripts, transcript after
    transcript in turn order: `turn_counts[i]` turns for transcript i, `is_agent[k]` the
    role of turn k; `turn_truncated[k]` says the turn's own tokens were cut to
    `max_turn_tokens`, `turn_chars_cut[k]` that its text was cut to `max_turn_chars` before
    tokenizing; `closing[k]` that turn k is part of its transcript's closing
    (`qualaudit.closing`); `echo[k]` how much turn k repeats an earlier turn of its role
    (`qualaudit.echo`; empty unless the builder was asked for it).

    Reading turn by turn (`WindowBuilder`), window k is turn k's and its state pools the whole
    window; `spans` is empty. Reading the conversation (`ConversationBuilder`), a window is a
    chunk of consecutive turns and `spans[k]` = (window, start, end) says where turn k's own
    tokens are in it: its state pools those. `reread[j]` = (turn, window, start, end) reads a
    turn a second time, in a chunk cut before its transcript's closing (`closing_apart`): its
    state is state n_turns + j of the encoder's output (`n_states` in all)."""

    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] = field(default_factory=list)
    is_agent: list[bool] = field(default_factory=list)
    turn_counts: list[int] = field(default_factory=list)
    turn_truncated: list[bool] = field(default_factory=list)
    turn_chars_cut: list[bool] = field(default_factory=list)
    closing: list[bool] = field(default_factory=list)
    echo: list[float] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    reread: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        """Tokens of each window (the batching unit)."""
        return [len(ids) for ids in self.input_ids]

    @property
    def n_turns(self) -> int:
        return len(self.is_agent)

    @property
    def n_states(self) -> int:
        """States the encoder computes: one per turn, then one per second reading."""
        return self.n_turns + len(self.reread)

    def turns_in(self, windows: Sequence[int]) -> tuple[list[int], torch.Tensor | None]:
        """The states read from these windows (a batch, in its row order: turn k, or
        n_turns + j for `reread[j]`) and, for chunks, their (M, 3) spans as (row in the
        batch, start, end); None: one turn per window."""
        if not self.spans:
            return list(windows), None
        row = {w: r for r, w in enumerate(windows)}
        spans = [*self.spans, *(span for _, *span in self.reread)]
        states = [k for k, (w, _, _) in enumerate(spans) if w in row]
        return states, torch.tensor([(row[spans[k][0]], *spans[k][1:]) for k in states],
                                    dtype=torch.long).reshape(-1, 3)

    @classmethod
    def concat(cls, parts: Sequence[TurnWindows]) -> TurnWindows:
        """The windows of several builds as one, transcripts in the order given."""
        if len({bool(p.spans) for p in parts if p.is_agent}) > 1:
            raise ValueError("cannot concatenate turn windows with conversation chunks")
        offsets = [0, *accumulate(len(p.input_ids) for p in parts)]
        joined = cls(*(list(chain.from_iterable(getattr(p, name) for p in parts))
                       for name in cls.__dataclass_fields__ if name not in ("spans", "reread")))
        joined.spans = [(w + offset, a, b) for p, offset in zip(parts, offsets) for w, a, b in p.spans]
        turns = [0, *accumulate(p.n_turns for p in parts)]
        joined.reread = [(k + first, w + offset, a, b) for p, offset, first in zip(parts, offsets, turns)
                         for k, w, a, b in p.reread]
        return joined


def within_max_turns(transcript: Transcript, max_turns: int | None
                     ) -> tuple[Transcript, list[int] | None, Sequence[int]]:
    """A transcript cut to at most `max_turns` scored turns: its first and last halves (the
    opening states the problem, the end says how it went).

    Returns the transcript (itself when nothing is cut), the first and last input index of
    the turns left out (None when none is), and the positions among its scored turns of those
    kept (for slicing per-turn labels alike).
    """
    scored = transcript.scored_turns
    if max_turns is None or len(scored) <= max_turns:
        return transcript, None, range(len(scored))  # no list built on the scoring path
    head, tail = (max_turns + 1) // 2, max_turns // 2
    kept = list(range(head)) + list(range(len(scored) - tail, len(scored)))
    left_out = [scored[head].index, scored[len(scored) - tail - 1].index]
    return replace(transcript, turns=tuple(scored[k] for k in kept)), left_out, kept


class WindowBuilder:
    """Turns each scored turn into `role: text` plus, as the pair's second segment, the
    previous scored turn. The turn keeps its first `max_turn_tokens` tokens (a cut is
    recorded); the context keeps its `role:` prefix and its last tokens, up to
    `max_context_tokens` in all, since what a turn answers is usually at the end of the one
    before.

    A turn longer than `max_turn_chars` characters (default `default_max_turn_chars`) is cut
    before it is tokenized, so that a megabyte pasted into a chat costs no more than a long
    turn: its first three quarters and last quarter of `max_turn_chars` are kept (the start
    feeds the turn's own window, the end the next turn's context).

    With `echo`, the windows also carry each turn's echo (`TurnWindows.echo`), for a model
    whose turn heads read it (`ModelConfig.echo`); otherwise it is left empty, unread."""

    def __init__(self, tokenizer, max_turn_tokens: int, max_context_tokens: int,
                 max_turn_chars: int | None = None, echo: bool = False) -> None:
        self.tokenizer = tokenizer
        self.echo = echo
        self.template = PairTemplate.from_tokenizer(tokenizer)
        self.max_turn_tokens = max_turn_tokens
        self.max_context_tokens = max_context_tokens
        self.max_turn_chars = max_turn_chars or default_max_turn_chars(max_turn_tokens)
        if self.max_turn_chars < 4:
            raise ValueError(f"max_turn_chars must be >= 4, found {self.max_turn_chars}")
        self.prefix_length = {role: len(ids) for role, ids in zip(ROLES, tokenizer(
            [f"{role}:" for role in ROLES], add_special_tokens=False)["input_ids"])}

    def _context(self, ids: list[int], role: str) -> list[int]:
        if len(ids) <= self.max_context_tokens:
            return ids
        keep = min(self.prefix_length[role], self.max_context_tokens)
        return ids[:keep] + ids[len(ids) - (self.max_context_tokens - keep):]

    def _cut(self, text: str) -> str:
        tail = self.max_turn_chars // 4
        return text[: self.max_turn_chars - tail - 1] + "\n" + text[len(text) - tail:]

    def _turn_tokens(self, transcripts: Sequence[Transcript]
                     ) -> tuple[TurnWindows, list[list[int]], list[str]]:
        """Windows with every per-turn field filled in (counts, roles, cuts), and each turn's
        `role: text` tokens (before the `max_turn_tokens` cut) and role, in turn order."""
        texts, roles = [], []
        windows = TurnWindows()
        for transcript in transcripts:
            scored = transcript.scored_turns
            windows.turn_counts.append(len(scored))
            start = closing_start(scored)
            windows.closing += [k >= start for k in range(len(scored))]
            if self.echo:
                windows.echo += echoes([(turn.role, turn.text) for turn in scored])
            for turn in scored:
                windows.is_agent.append(turn.role == "agent")
                cut = len(turn.text) > self.max_turn_chars
                texts.append(f"{turn.role}: {self._cut(turn.text) if cut else turn.text}")
                windows.turn_chars_cut.append(cut)
                roles.append(turn.role)
        # Turns are cut to max_turn_tokens by the callers, so the tokenizer's warning about
        # sequences longer than the model's limit does not apply (verbose=False).
        token_ids = (self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
                     if texts else [])
        windows.turn_truncated = [len(ids) > self.max_turn_tokens for ids in token_ids]
        return windows, token_ids, roles

    def build(self, transcripts: Sequence[Transcript]) -> TurnWindows:
        windows, token_ids, roles = self._turn_tokens(transcripts)
        first_of_transcript = set(accumulate(windows.turn_counts[:-1], initial=0))
        t = self.template
        for k, ids in enumerate(token_ids):
            context = [] if k in first_of_transcript else self._context(token_ids[k - 1], roles[k - 1])
            turn = ids[: self.max_turn_tokens]
            if context:
                first, second = t.prefix + turn + t.middle, context + t.suffix
            else:
                # A first turn has no pair: close segment A the way the tokenizer would.
                first, second = t.prefix + turn + (t.middle[:1] or t.suffix), []
            windows.input_ids.append(first + second)
            windows.token_type_ids.append([t.type_a] * len(first) + [t.type_b] * len(second))
        return windows


class ConversationBuilder(WindowBuilder):
    """Reads a transcript as text: its turns (`role: text`, each cut as `WindowBuilder` cuts
    it) packed in order into chunks of at most `chunk_tokens` tokens. A chunk that does not
    start the transcript opens with the first turn's first `max_context_tokens` tokens (the
    problem as stated) and the last `max_context_tokens` of the turn before it, so every turn
    is read with the opening and what it answers, and turns inside a chunk see each other.
    A turn's state pools its own tokens (`TurnWindows.spans`).

    `closing_apart` adds, for a transcript whose closing shares a chunk with earlier turns, that
    chunk cut before the closing (`TurnWindows.reread`): exactly the chunk the transcript
    without its closing ends with, so that those turns can also be read as without it."""

    def __init__(self, tokenizer, max_turn_tokens: int, max_context_tokens: int,
                 chunk_tokens: int, max_turn_chars: int | None = None,
                 closing_apart: bool = False, echo: bool = False) -> None:
        super().__init__(tokenizer, max_turn_tokens, max_context_tokens, max_turn_chars, echo)
        self.closing_apart = closing_apart
        t = self.template
        self.open, self.close = t.prefix, t.middle[:1] or t.suffix
        least = len(self.open) + len(self.close) + max_turn_tokens + 2 * max_context_tokens
        if chunk_tokens < least:
            raise ValueError(f"chunk_tokens must be >= {least} (a whole turn, the opening and "
                             f"the previous turn's context), found {chunk_tokens}")
        self.chunk_tokens = chunk_tokens

    def build(self, transcripts: Sequence[Transcript]) -> TurnWindows:
        windows, token_ids, roles = self._turn_tokens(transcripts)
        turns = [ids[: self.max_turn_tokens] for ids in token_ids]
        first = 0
        for count in windows.turn_counts:
            self._pack(turns[first:first + count], roles[first:first + count], windows)
            closing = windows.closing[first:first + count]
            if self.closing_apart and any(closing):
                self._reread_before_closing(windows, first + closing.index(True))
            first += count
        return windows

    def _pack(self, turns: list[list[int]], roles: list[str], windows: TurnWindows) -> None:
        room = self.chunk_tokens - len(self.close)
        k = 0
        while k < len(turns):
            lead = [] if k == 0 else turns[0][: self.max_context_tokens]
            if k > 1:
                lead = lead + self._context(turns[k - 1], roles[k - 1])
            ids = self.open + lead
            while k < len(turns) and len(ids) + len(turns[k]) <= room:  # one always fits
                windows.spans.append((len(windows.input_ids), len(ids), len(ids) + len(turns[k])))
                ids = ids + turns[k]
                k += 1
            ids = ids + self.close
            windows.input_ids.append(ids)
            windows.token_type_ids.append([self.template.type_a] * len(ids))

    def _reread_before_closing(self, windows: TurnWindows, closing: int) -> None:
        """Add the chunk of turn `closing` cut before it, when earlier turns share it."""
        chunk, first = windows.spans[closing][0], closing
        while first > 0 and windows.spans[first - 1][0] == chunk:  # a chunk's turns are consecutive
            first -= 1
        before = range(first, closing)
        if not before:
            return
        ids = windows.input_ids[chunk][:windows.spans[closing - 1][2]] + self.close
        windows.reread += [(k, len(windows.input_ids), *windows.spans[k][1:]) for k in before]
        windows.input_ids.append(ids)
        windows.token_type_ids.append([self.template.type_a] * len(ids))


def turn_causal_mask(attention_mask: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """(N, L) padding mask and (M, 3) turn spans (row, start, end) -> (N, 1, L, L) boolean
    attention: a token sees the real tokens of its own turn and of the turns before it in its
    row, never a later turn's. Every token up to a turn's end belongs to that turn (its role
    prefix, and for the first turn the chunk's opening context), so that not even the role of
    the turn after it shows."""
    N, L = attention_mask.shape
    spans = spans.to(attention_mask.device)
    ends = torch.zeros((N, L + 1), dtype=torch.long, device=attention_mask.device)
    ends.index_put_((spans[:, 0], spans[:, 2]), torch.ones_like(spans[:, 0]), accumulate=True)
    turn = ends[:, :L].cumsum(1)  # (N, L): how many turns ended at or before each token
    return ((turn[:, None, :] <= turn[:, :, None]) & attention_mask.bool()[:, None, :])[:, None]


def builder_for(config, tokenizer, max_turn_chars: int | None = None) -> WindowBuilder:
    """How a model with this `ModelConfig` reads transcripts (its `reading`), for scoring,
    training and calibration alike."""
    if config.reads_conversation:
        return ConversationBuilder(tokenizer, config.max_turn_tokens, config.max_context_tokens,
                                   config.chunk_tokens, max_turn_chars,
                                   # a causal reading never lets a turn see the closing
                                   closing_apart=bool(config.closing_apart)
                                   and config.reading == "conversation", echo=bool(config.echo))
    return WindowBuilder(tokenizer, config.max_turn_tokens, config.max_context_tokens,
                         max_turn_chars, echo=bool(config.echo))


def default_max_turn_chars(max_turn_tokens: int) -> int:
    """Characters kept of a turn before tokenizing: 64 per token kept (a token is rarely more
    than a few characters, so a turn cut here is already far over its token limit), at least
    4096."""
    return max(4096, 64 * max_turn_tokens)


def token_budget_batches(lengths: Sequence[int], max_batch_tokens: int,
                         max_padding: float = 1.0, min_batch_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches, longest first, so that (batch size x longest length)
    stays within `max_batch_tokens`; padding stays small because neighbours have similar
    lengths. A single sequence longer than the budget gets a batch of its own.

    A batch that already holds `min_batch_tokens` padded tokens is also closed before a
    sequence that would make more than `max_padding` of its tokens padding: where lengths
    are spread out (a small chunk, a long tail) this trades a few more, smaller batches for
    less work spent on padding.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        if current:
            longest = lengths[current[0]]
            padded = (len(current) + 1) * longest
            too_padded = (padded - real - lengths[i] > max_padding * padded
                          and len(current) * longest >= min_batch_tokens)
            if padded > max_batch_tokens or too_padded:
                batches.append(current)
                current, real = [], 0
        current.append(i)
        real += lengths[i]
    if current:
        batches.append(current)
    return batches


def collate(windows: TurnWindows, indices: Sequence[int], pad_id: int,
            with_token_types: bool, pin_memory: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded tensors for the windows at `indices`, built with one tensor conversion per
    field rather than one per window; `pin_memory` puts them in page-locked memory, so that a
    `.to("cuda", non_blocking=True)` copy overlaps with the GPU's work (CUDA only)."""
    lengths = [len(windows.input_ids[i]) for i in indices]
    shape = (len(indices), max(lengths))
    real = torch.arange(shape[1])[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    ids = torch.full(shape, pad_id, dtype=torch.long, pin_memory=pin_memory)
    ids[real] = torch.tensor(list(chain.from_iterable(windows.input_ids[i] for i in indices)))
    mask = torch.empty(shape, dtype=torch.long, pin_memory=pin_memory)
    mask.copy_(real)
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_token_types:
        types = torch.zeros(shape, dtype=torch.long, pin_memory=pin_memory)
        types[real] = torch.tensor(list(chain.from_iterable(
            windows.token_type_ids[i] for i in indices)))
        batch["token_type_ids"] = types
    return batch

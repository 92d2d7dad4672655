"""The small torch modules behind the head specs (`heads.HEAD_SPECS`): an optional causal
transformer over the turn states, linear turn heads, and learned position-aware pooling of
turn states into conversation outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .echo import BANDS
from .heads import HeadSpec


class TurnContext(nn.Module):
    """A small causal transformer over a conversation's turn states, between the encoder and
    every head: each turn reads the turns before it (role and position aware), so that an
    answer can be seen to repeat an earlier one, or a name to answer the agent's question.

    Causal, so a turn's outputs and the running escalation estimate never depend on what comes
    later. Pre-norm layers whose output projections start at zero: a new layer is the identity,
    so adding it to a trained model changes no score until it is trained.
    """

    def __init__(self, hidden: int, layers: int, position_buckets: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.position_buckets = position_buckets
        self.role = nn.Embedding(2, hidden)
        self.start = nn.Embedding(position_buckets, hidden)
        for table in (self.role, self.start):
            nn.init.normal_(table.weight, std=0.02)
        heads = max(1, hidden // 64)
        self.layers = nn.ModuleList(_ContextLayer(hidden, heads, dropout) for _ in range(layers))

    def forward(self, states: torch.Tensor, is_agent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states (B, T, H), is_agent (B, T) bool, mask (B, T) bool -> (B, T, H) float32."""
        B, T, _ = states.shape
        pos = torch.arange(T, device=states.device).clamp(max=self.position_buckets - 1)
        cue = self.role(is_agent.long()) + self.start(pos)[None]
        later = torch.ones(T, T, dtype=torch.bool, device=states.device).triu(1)
        padding = ~mask
        padding[:, 0] = False  # a row with no turn still attends somewhere (its output is unused)
        x = states.float()
        for layer in self.layers:
            x = layer(x, cue, later, padding)
        return x


class _ContextLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * hidden, hidden))
        self.dropout = nn.Dropout(dropout)
        for layer in (self.attn.out_proj, self.ff[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cue: torch.Tensor, later: torch.Tensor,
                padding: torch.Tensor) -> torch.Tensor:
        h = self.norm_attn(x + cue)
        read, _ = self.attn(h, h, h, attn_mask=later, key_padding_mask=padding, need_weights=False)
        x = x + self.dropout(read)
        return x + self.dropout(self.ff(self.norm_ff(x)))


class TurnHeads(nn.Module):
    """One linear head per turn-level spec over the turn state.

    The heads named in `echo` also add a learned vector for the band of their turn's echo
    (`qualaudit.echo`: how much it repeats an earlier turn of its role), zero for the lowest
    band and, for the others, zero at the start, so that adding them to a trained model
    changes no score until they are trained."""

    def __init__(self, specs: list[HeadSpec], hidden: int, dropout: float = 0.1,
                 echo: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.specs = [s for s in specs if s.level != "conversation"]
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({s.key: nn.Linear(hidden, s.size) for s in self.specs})
        self.echo = nn.ModuleDict({s.key: nn.Embedding(len(BANDS) + 1, s.size, padding_idx=0)
                                   for s in self.specs if s.name in echo})  # checked by ModelConfig
        for table in self.echo.values():
            nn.init.zeros_(table.weight)

    def forward(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """states (N, H) -> {spec name: logits (N, *spec.shape)}, for every turn (the caller
        keeps the rows whose role matches the head)."""
        x = self.dropout(states)
        return {s.name: self.heads[s.key](x).view(-1, *s.shape) for s in self.specs}

    def with_echo(self, logits: dict[str, torch.Tensor], bands: torch.Tensor) -> dict[str, torch.Tensor]:
        """`logits` with the echo heads' band vectors added; `bands` (N,) long is each row's
        echo band (`echo.band`)."""
        out = dict(logits)
        for s in self.specs:
            if s.key in self.echo:
                out[s.name] = logits[s.name] + self.echo[s.key](bands).view(-1, *s.shape).to(logits[s.name].dtype)
        return out

    def features(self, logits: dict[str, torch.Tensor], is_agent: torch.Tensor) -> torch.Tensor:
        """Turn-head logits as conversation inputs, zeroed where the head's role does not
        apply, and detached so that conversation targets never redefine the turn heads."""
        parts = []
        for s in self.specs:
            applies = is_agent if s.level == "agent_turn" else ~is_agent
            parts.append(logits[s.name].detach().reshape(len(is_agent), -1) * applies[:, None])
        return torch.cat(parts, dim=-1) if parts else is_agent.new_zeros((len(is_agent), 0), dtype=torch.float)


@dataclass
class ConversationOutput:
    """Conversation logits, and on request the per-turn views used for evidence.

    logits: {name: (B, *shape)}; leave_one_out: {name: (B, T, *shape)} the logits with turn t
    left out of the pooling; running: {name: (B, T, *shape)} for causal heads, the estimate
    after each turn; hazard: {name: (B, T)} for causal heads, the logit of the chance that
    escalation became needed at each turn (what a label at a turn trains).
    """

    logits: dict[str, torch.Tensor]
    leave_one_out: dict[str, torch.Tensor] | None = None
    running: dict[str, torch.Tensor] | None = None
    hazard: dict[str, torch.Tensor] | None = None


class ConversationHeads(nn.Module):
    """Learned, position-aware pooling of turn states into conversation outputs.

    Each turn becomes z_t = LayerNorm(W[h_t; f_t] + role + start position [+ end position]),
    where f_t are the turn heads' logits.

    "full" heads score the turns, pool them with a softmax and map the pooled vector to their
    logits; end-relative position buckets let the last turns weigh differently from the same
    words earlier ("the end matters").

    "causal" heads (escalation) give each turn a hazard, the chance that escalation became
    needed at that turn, from z_t and an attention pool of the turns before it; the estimate
    after turn t is the noisy-OR 1 - prod_{j<=t}(1 - hazard_j). It only sees turns <= t and
    never goes down, so "P(needed at some turn)" and "the first turn it reaches 0.5" agree.

    Leaving a turn out of the pooling drops its softmax weight (full) or its hazard factor
    (causal); other turns keep their positions and states.

    The "full" heads named in `closing_apart` pool only the turns before the transcript's
    closing, with end positions counted from the last of them: as in the transcript without
    its closing, whose turns give no evidence to these heads.

    The "full" heads named in `last_turns` also read the last customer turn and the last agent
    turn they pool (z_t; zeros for a role with none), through a linear map added to the pooled
    vector: a softmax pool blends every turn, while whether a customer will be back is read at
    the end. The map starts at zero, so adding it to a trained model changes no score until it
    is trained. A turn left out is left out of this read too: the turn of its role before it
    takes its place.

    The "causal" heads named in `echo` add to each turn's input a learned vector for the band of
    its echo (`qualaudit.echo`: how much it repeats an earlier turn of its role), so that an
    answer given again, or a problem stated again, can raise the hazard at that turn whatever
    the turn heads say of it. Zero for the lowest band and, for the others, zero at the start.
    The bands are the whole transcript's: a reading that leaves a turn out (evidence with
    turn-context layers) keeps the later turns' bands as they were with it.
    """

    def __init__(self, specs: list[HeadSpec], hidden: int, n_features: int,
                 dim: int = 128, position_buckets: int = 16, dropout: float = 0.1,
                 closing_apart: tuple[str, ...] = (), last_turns: tuple[str, ...] = (),
                 echo: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.specs = [s for s in specs if s.level == "conversation"]
        if any(s.pooling == "causal" and s.shape != () for s in self.specs):
            raise ValueError("causal conversation heads must have one binary output")
        self.closing_apart = frozenset(closing_apart)  # checked by ModelConfig
        self.last_turns = frozenset(last_turns)  # checked by ModelConfig
        self.position_buckets = position_buckets
        self.proj = nn.Linear(hidden + n_features, dim)
        self.role = nn.Embedding(2, dim)
        self.start = nn.Embedding(position_buckets, dim)
        self.end = nn.Embedding(position_buckets, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.ModuleDict({s.key: nn.Linear(dim, 1) for s in self.specs})
        self.out = nn.ModuleDict({
            s.key: nn.Sequential(nn.Linear(dim * (2 if s.pooling == "causal" else 1), dim),
                                   nn.GELU(), nn.Linear(dim, s.size))
            for s in self.specs
        })
        self.last = nn.ModuleDict({s.key: nn.Linear(2 * dim, dim) for s in self.specs
                                   if s.name in self.last_turns})
        self.echo = nn.ModuleDict({s.key: nn.Embedding(len(BANDS) + 1, dim, padding_idx=0)
                                   for s in self.specs if s.name in echo})  # checked by ModelConfig
        if any(s.pooling != "causal" for s in self.specs if s.key in self.echo):
            raise ValueError("only causal conversation heads read the echo")
        with torch.no_grad():  # prior: escalation is rarely needed at any one turn (0.7%)
            for s in self.specs:
                if s.pooling == "causal":
                    self.out[s.key][-1].bias.fill_(-5.0)
            for layer in self.last.values():
                layer.weight.zero_()
                layer.bias.zero_()
            for table in self.echo.values():
                table.weight.zero_()

    def forward(self, states: torch.Tensor, features: torch.Tensor, is_agent: torch.Tensor,
                mask: torch.Tensor, with_evidence: bool = False, leave_one_out: bool = True, *,
                closing: torch.Tensor | None = None, echo: torch.Tensor | None = None
                ) -> ConversationOutput:
        """states (B, T, H), features (B, T, F), is_agent (B, T) bool, mask (B, T) bool,
        closing (B, T) bool: the turns of each transcript's closing (None: no closing), echo
        (B, T) long: each turn's echo band (`echo.band`; needed when a head reads it).
        `with_evidence` adds the running estimates and, unless `leave_one_out` is False (a
        caller that computes it otherwise), the leave-one-out logits."""
        if self.echo and echo is None:
            readers = [s.name for s in self.specs if s.key in self.echo]
            raise ValueError(f"{', '.join(readers)} read the echo: pass each turn's band")
        B, T, _ = states.shape
        last = (mask.sum(1) - 1).clamp(min=0)
        pos = torch.arange(T, device=states.device)
        start = pos.clamp(max=self.position_buckets - 1).expand(B, T)
        base = self.proj(torch.cat([states, features], -1).float())
        base = base + self.role(is_agent.long()) + self.start(start)

        def full_inputs(read: torch.Tensor) -> torch.Tensor:
            end = (read.sum(1)[:, None] - 1 - pos[None]).clamp(0, self.position_buckets - 1)
            return self.dropout(self.norm(base + self.end(end)))

        before = mask if closing is None or not self.closing_apart else mask & ~closing
        z_full = full_inputs(mask)
        z_before = z_full if before is mask else full_inputs(before)
        z_causal = self.dropout(self.norm(base))

        logits, loo, running, hazards = {}, {}, {}, {}
        for s in self.specs:
            key = s.key
            if s.pooling == "causal":
                z = z_causal if key not in self.echo else self.dropout(self.norm(base + self.echo[key](echo)))
                scores = self.score[key](z).squeeze(-1)  # (B, T)
                before = _causal_pool(z, scores, mask, exclusive=True)  # (B, T, D)
                hazard = self.out[key](torch.cat([z, before], -1)).squeeze(-1)  # (B, T)
                hazards[s.name] = hazard
                log_survival = torch.cumsum(
                    -F.softplus(hazard.double()).masked_fill(~mask, 0.0), dim=1)  # (B, T)
                running[s.name] = _noisy_or_logit(log_survival).to(hazard.dtype)
                logits[s.name] = running[s.name][torch.arange(B), last]
                if with_evidence and leave_one_out:
                    final = log_survival[torch.arange(B), last][:, None]
                    loo[s.name] = _noisy_or_logit(final + F.softplus(hazard.double())).to(hazard.dtype)
            else:
                z, read = (z_before, before) if s.name in self.closing_apart else (z_full, mask)
                scores = self.score[key](z).squeeze(-1)
                pooled = _pool(z, scores, read)[:, None]  # (B, 1, D)
                if with_evidence and leave_one_out:  # one MLP call: equal inputs round equally
                    pooled = torch.cat([pooled, _leave_one_out_pool(z, scores, read)], 1)
                if s.name in self.last_turns:
                    ends = _last_turns(z, is_agent, read, with_evidence and leave_one_out)
                    pooled = pooled + self.last[key](ends.to(pooled.dtype))
                out = self.out[key](pooled)  # (B, 1 [+ T], size)
                logits[s.name] = out[:, 0].view(B, *s.shape)
                if with_evidence and leave_one_out:
                    loo[s.name] = out[:, 1:].view(B, T, *s.shape)
        return ConversationOutput(logits, loo if with_evidence else None,
                                  running if with_evidence else None, hazards)


def _last_turns(z: torch.Tensor, is_agent: torch.Tensor, read: torch.Tensor,
                leave_one_out: bool) -> torch.Tensor:
    """(B, 1 [+ T], 2D): [last customer turn ; last agent turn] of the turns read (zeros for
    a role with none), then, with `leave_one_out`, the same with turn t left out (the turn of
    its role before it, if any, in its place)."""
    B, T, _ = z.shape
    rows = torch.arange(B, device=z.device)
    pos = torch.arange(T, device=z.device).expand(B, T)

    def turn(at: torch.Tensor) -> torch.Tensor:  # (B,) positions, -1: none -> (B, 1, D)
        return (z[rows, at.clamp(min=0)] * (at >= 0)[:, None].to(z.dtype))[:, None]

    full, without = [], []
    for role in (False, True):
        own = read & (is_agent == role)
        last = torch.where(own, pos, -1).max(1).values
        full.append(turn(last))
        if leave_one_out:
            before = torch.where(own & (pos < last[:, None]), pos, -1).max(1).values
            is_last = (pos == last[:, None])[..., None]  # (B, T, 1): turn t is its role's last
            without.append(torch.where(is_last, turn(before), turn(last)))
    ends = torch.cat(full, -1)
    return torch.cat([ends, torch.cat(without, -1)], 1) if leave_one_out else ends


def _noisy_or_logit(log_survival: torch.Tensor) -> torch.Tensor:
    """logit(1 - exp(S)) for S = sum of log(1 - hazard) <= 0, stable at both ends."""
    s = log_survival.clamp(max=-1e-300)
    return torch.log(-torch.expm1(s)) - s


def _weights(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """exp(score - max) in float64 (zero on padding): the leave-one-out and prefix sums
    below subtract and accumulate these, which float32 would do too coarsely."""
    s = scores.double().masked_fill(~mask, float("-inf"))
    m = s.max(dim=1, keepdim=True).values.clamp(min=-1e30)
    return torch.exp((s - m).clamp(min=-700.0)).masked_fill(~mask, 0.0)


def _pool(z: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = _weights(scores, mask)  # (B, T)
    pooled = (w[..., None] * z.double()).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-300)
    return pooled.to(z.dtype)


def _leave_one_out_pool(z: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D): the pooled vector with turn t left out; zeros when nothing is left.

    Subtracting turn t from the totals is exact except for the turn that dominates a row,
    whose weight can be all of the total: that turn's row is pooled over the others afresh.
    """
    w = _weights(scores, mask)
    zd = z.double()
    total = (w[..., None] * zd).sum(1, keepdim=True)  # (B, 1, D)
    rest = w.sum(1, keepdim=True) - w  # (B, T)
    pooled = (total - w[..., None] * zd) / rest.clamp(min=1e-300)[..., None]
    top = torch.where(mask.any(1), w.argmax(1), 0)  # (B,)
    rows = torch.arange(len(top), device=z.device)
    others = mask.clone()
    others[rows, top] = False
    w_others = _weights(scores, others)
    pooled[rows, top] = (w_others[..., None] * zd).sum(1) / w_others.sum(1, keepdim=True).clamp(min=1e-300)
    nothing_left = torch.zeros_like(mask)
    nothing_left[rows, top] = ~others.any(1)
    return pooled.masked_fill(nothing_left[..., None], 0.0).to(z.dtype)


def _causal_pool(z: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
                 exclusive: bool = False) -> torch.Tensor:
    """(B, T, D): the pooled vector over turns 0..t (0..t-1 when `exclusive`; zeros at t = 0)."""
    w = _weights(scores, mask)
    num = torch.cumsum(w[..., None] * z.double(), dim=1)
    den = torch.cumsum(w, dim=1)[..., None]
    if exclusive:
        num = torch.cat([torch.zeros_like(num[:, :1]), num[:, :-1]], 1)
        den = torch.cat([torch.zeros_like(den[:, :1]), den[:, :-1]], 1)
    return (num / den.clamp(min=1e-300)).to(z.dtype)

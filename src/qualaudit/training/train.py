"""Multi-task training: one loop for the bundled default model and for fine-tuning on a
user's own labels. Every source labels only some heads, so each head's loss is averaged over
the items that carry its label (masked), with soft targets where annotators disagree.

    >>> from qualaudit.training.train import TrainingArgs, train
    >>> train(TrainingArgs(data_dir="../shared/data", output_dir="models/default"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..batching import WindowBuilder
from ..calibration import Calibration
from ..heads import DEFAULT_HEADS, HEAD_SPECS, POSITIVE_FROM, HeadSpec, empathy_score
from ..model import DEFAULT_ENCODER, READINGS, ModelOutput, QualityModel, UntrainedModelWarning
from .batches import Prepared, batches, forward, prepare, stack_labels, turn_values, window_builder
from .datasets import Example, by_split, load_examples
from .datasets.augment import KINDS, TWIN_SETS, Augmenter, checked_kinds, style_twins

log = logging.getLogger("qualaudit.train")
CHECKPOINT = "checkpoint.pt"
# the log-odds a pair's first reading is asked to stay above its second's (`contrast_loss`): a
# confirmed fix's resolution above the open one's, a looped answer's breakdown above a new one's,
# a request's escalation above a turn's that asks for no one; 1.0 is 0.50 against 0.27 around the middle
CONTRAST_MARGIN = 1.0


@dataclass
class TrainingArgs:
    """What `train` does; checked on creation so a typo fails before an hour of training.

    `init` is an encoder ("minilm", a path or hub id: new heads) or a saved qualaudit model
    directory (fine-tuning). `heads` names the targets to train (None: every target the data
    labels); named heads train only their own layers, on the conversations and augmentations
    that label them (augmentations drawn from every training conversation), so the others keep
    their weights (and, with `freeze_encoder`, their scores: it trains the heads only, for small
    label sets). `reads_only` (with `freeze_encoder`) trains only what the added reads
    (`ADDED_READS`) of the named heads add, every other weight frozen, the heads' own maps
    included: a read learned without moving any score it does not touch. `shared_layers` (with
    every conversation head named) also trains the layers they all read (the turn projection,
    role and position embeddings and norm of `ConversationHeads`): a customer turn's state holds
    the agent's last words as context, and only those layers see it for every head at once
    (benchmarks/README.md, Round 139).
    `max_train_tokens`
    caps the encoder tokens seen in training (the run's length) and `max_epochs` the passes
    over the data (what ends a run on a small label set); `uss_share` subsamples the
    large USS corpus; `augment` adds that share of augmented conversations per pass, of the
    `augment_kinds` named (default every kind of `augment.KINDS`; `augment.OPT_IN`'s only when
    named).
    A conversation over `max_turns` scored turns keeps its first and last halves, as scoring
    cuts them (`batching.within_max_turns`).

    The turn window is the model's (`ModelConfig`): a saved model keeps its own, and
    `max_turn_tokens` / `max_context_tokens` only set the window of a new model built on an
    encoder (None: `ModelConfig`'s defaults). `context_layers` (None: the init's, or none)
    sets the causal turn-context layers; on a saved model without them they are added as the
    identity, so training starts from the saved model's scores. `last_turns` (None: the
    init's, or none) names the targets whose heads also read the last customer and agent turns
    (`ModelConfig.last_turns`); on a saved model they are added at zero, changing no score
    until trained, and the ones it has must be named again. `echo` (None: the init's, or none)
    names the per-turn targets whose heads, and the causal conversation target (escalation)
    whose turn inputs, also read how much their turn repeats an earlier one
    (`ModelConfig.echo`), added at zero and named again alike. `reading` (None: the init's,
    or "turns") sets how the encoder reads a transcript (`ModelConfig.reading`); a saved model
    switched to another reading keeps its weights (its calibration is refitted).
    `refit_heads` replaces a saved model's conversation heads with new ones and trains only
    them, every other weight frozen: heads fitted afresh on the final turn states transfer to
    other sources better than heads trained along with the encoder (benchmarks/README.md,
    "Candidate designs", Round 3). It trains every conversation head the model has.
    `closing_consistency` > 0 adds, at every step, `closing_pairs` dialogues each read with
    and without a closing pleasantry (`Augmenter.closing_pair`) and that weight times the
    squared difference of their log-odds of resolution (`consistency_loss`): shared labels
    balance a closing only on average, a pair compares the two readings themselves
    (benchmarks/README.md, Round 5). Their tokens count in `max_train_tokens`. A resolution
    head in `closing_apart` never reads those closings, so its two readings differ only by
    dropout: the loss then holds resolution steady under dropout and no more (a warning says
    so; benchmarks/README.md, after round 115).
    `style_consistency` > 0 does the same for the agent's wording: `style_pairs` written twins
    a step (`augment.style_twins`, the same conversation with the agent in a templated bot's
    wording and in a human agent's), and that weight times the squared difference of every
    trained conversation head's log-odds between the two (benchmarks/README.md, Round 57):
    reports compare AI and human agents on these scores; `twin_sets` names the written sets
    drawn from (`augment.TWIN_SETS`). `style_empathy` adds the empathy head
    to those, read as the row reports it (the mean over agent turns): empathy is an agent-turn
    head, and the twins' empathy alone kept most of them apart (benchmarks/README.md, after
    round 99).
    `reply_contrast` > 0 adds `reply_pairs` agent answers a step, each answered two ways
    (`Augmenter.reply_pair`: the customer's own confirmation, and an unresolved customer's last
    word), and that weight times a hinge on how far resolution's log-odds of the confirmed one
    stay below the other's plus CONTRAST_MARGIN (`contrast_loss`). Without it the closing drop
    and the "that fixed it" rise move together: a model learns to ignore the closing thanks by
    ignoring the customer's last word (benchmarks/README.md, round 93).
    `loop_contrast` > 0 does the same for breakdown: `loop_pairs` agent turns a step, each
    given as a near-duplicate of the agent's answer before and as the helpdesk dialogue's own
    new answer (`Augmenter.loop_pair`), and a hinge on the last turn's breakdown log-odds. The
    loop augmentations label repeated answers as breakdowns, but only against other dialogues'
    turns, and half of the suite's repeated answers moved breakdown by less than 0.05
    (benchmarks/README.md, round 96).
    `request_contrast` > 0 does the same for escalation: `request_pairs` customer turns a step,
    each a written request for a human and a turn that asks for no one, in the same place of
    a real dialogue (`Augmenter.request_pair`), and a hinge on the conversation's escalation
    log-odds. The request augmentations label the request turn, but the fine-tunes from
    0.10.0 let a request's escalation fall under 0.5 in 16 of 18 runs (benchmarks/README.md,
    round 102).
    `teacher_labels` names JSON files of another model's probabilities on training
    conversations ({target: {"labels": {`Example.key`: class probabilities}}},
    `benchmarks/teachers.py`); a conversation label they cover becomes `teacher_weight` x the
    teacher's + (1 - `teacher_weight`) x its own (distillation; benchmarks/README.md, Round 14).
    `anchor` > 0 (a saved model as `init`) adds that weight times how far every trained head's
    outputs move from the initial model's on the batch's conversations from the sources
    (`anchor_loss`; "Learning without Forgetting", Li & Hoiem 2016): a run that teaches a
    behaviour (augmentations, the style twins) keeps what the initial model learned from the
    sources in rounds a new run would undo (benchmarks/README.md, Rounds 68-70).
    `anchor_targets` ({target: weight}) gives the heads of a target their own weight in place
    of `anchor`: a source whose stand-in labels conflict with a behaviour taught (repeat
    inquiry's "open end" against two-turn answers) held firmly, the others left freer to learn
    (benchmarks/README.md, Round 76).
    """

    output_dir: str
    data_dir: str | None = None
    examples: list[Example] | None = field(default=None, repr=False)
    init: str = DEFAULT_ENCODER
    heads: list[str] | None = None
    sources: list[str] | None = None
    freeze_encoder: bool = False
    reads_only: bool = False
    shared_layers: bool = False
    refit_heads: bool = False
    max_train_tokens: int = 2_200_000
    max_epochs: int = 4
    batch_tokens: int = 3072
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    evals: int = 4
    dev_per_source: int = 150
    uss_share: float = 0.3
    augment: float = 0.15
    augment_kinds: tuple[str, ...] = KINDS
    closing_consistency: float = 0.0
    closing_pairs: int = 4
    style_consistency: float = 0.0
    style_pairs: int = 4
    style_empathy: bool = False
    twin_sets: tuple[str, ...] = ("style_twins",)
    reply_contrast: float = 0.0
    reply_pairs: int = 4
    loop_contrast: float = 0.0
    loop_pairs: int = 4
    request_contrast: float = 0.0
    request_pairs: int = 4
    teacher_labels: tuple[str, ...] = ()
    teacher_weight: float = 0.5
    anchor: float = 0.0
    anchor_targets: dict[str, float] = field(default_factory=dict)
    max_turn_tokens: int | None = None
    max_context_tokens: int | None = None
    max_turns: int = 32
    context_layers: int | None = None
    last_turns: list[str] | None = None
    echo: list[str] | None = None
    reading: str | None = None
    seed: int = 0
    device: str = "cpu"
    name: str = "qualaudit-default"
    version: str = "0.2.0"
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.examples is None):
            raise ValueError("give exactly one of data_dir (public datasets) or examples")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir {self.data_dir!r} is not a directory")
        for name in ("max_train_tokens", "max_epochs", "batch_tokens", "evals", "dev_per_source",
                     "max_turn_tokens", "max_context_tokens", "max_turns", "context_layers", "closing_pairs",
                     "style_pairs", "reply_pairs", "loop_pairs", "request_pairs"):
            value = getattr(self, name)
            if value is None and name in ("max_turn_tokens", "max_context_tokens", "context_layers"):
                continue
            least = 0 if name == "context_layers" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, found {value!r}")
        if self.reading not in (None, *READINGS):
            raise ValueError(f"reading must be one of {READINGS}, found {self.reading!r}")
        self.augment_kinds = checked_kinds(self.augment_kinds)
        for name in ("last_turns", "echo"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
                raise ValueError(f"{name} must be a list of targets, found {value!r}")
        if self.reads_only and (not self.freeze_encoder or self.refit_heads):
            raise ValueError("reads_only trains the added reads on a frozen encoder: set "
                             "freeze_encoder, not refit_heads")
        if self.shared_layers and (self.heads is None or self.reads_only):
            raise ValueError("shared_layers adds the conversation heads' shared layers to the named "
                             "heads' own; name heads, without reads_only")
        if self.refit_heads and self.heads is not None:
            raise ValueError("refit_heads trains every conversation head; do not name heads")
        for name in ("closing_consistency", "style_consistency", "reply_contrast", "loop_contrast",
                     "request_contrast", "anchor"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be >= 0, found {getattr(self, name)!r}")
        self.twin_sets = tuple(self.twin_sets)
        unknown = [n for n in self.twin_sets if n not in TWIN_SETS]
        if unknown or not self.twin_sets:
            raise ValueError(f"twin_sets must name some of {', '.join(TWIN_SETS)}, found {list(self.twin_sets)}")
        if self.style_empathy and not self.style_consistency:
            raise ValueError("style_empathy adds the empathy head to style_consistency's; set "
                             "style_consistency > 0")
        targets = {s.target for s in HEAD_SPECS.values()}
        for target, weight in self.anchor_targets.items():
            if target not in targets:
                raise ValueError(f"anchor_targets: {target!r} is not a target; known: {sorted(targets)}")
            if not 0 <= weight < math.inf:
                raise ValueError(f"anchor_targets: {target}'s weight must be >= 0, found {weight!r}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, found {getattr(self, name)!r}")
        self.teacher_labels = tuple(self.teacher_labels)
        for path in self.teacher_labels:
            if not Path(path).is_file():
                raise ValueError(f"teacher_labels: {path!r} is not a file")
        for name in ("warmup", "uss_share", "augment", "weight_decay", "teacher_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], found {getattr(self, name)!r}")


    def all_examples(self) -> list[Example]:
        """The examples given, or every example of the public datasets named."""
        return self.examples if self.examples is not None else load_examples(self.data_dir, self.sources)


@dataclass
class TrainResult:
    model: QualityModel
    steps: int
    train_tokens: int
    seconds: float
    best_step: int
    dev_losses: list[dict[str, float]]


# ------------------------------------------------------------------------------ loss
def head_loss(spec: HeadSpec, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
              pos_weight: torch.Tensor | None, class_weight: torch.Tensor | None) -> torch.Tensor | None:
    """Mean loss over the labelled items of one head; None when nothing is labelled."""
    if spec.binary:
        if weight.sum() == 0:
            return None
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none",
                                                  pos_weight=pos_weight)
        return (loss * weight).sum() / weight.sum()
    # categorical: soft cross-entropy over the last axis; an item counts if labelled
    item_weight = weight[..., 0]
    if item_weight.sum() == 0:
        return None
    logp = F.log_softmax(logits.float(), -1)
    scale = class_weight if class_weight is not None else 1.0
    loss = -(target * logp * scale).sum(-1)
    return (loss * item_weight).sum() / item_weight.sum()


def label_balance(items: list[Prepared], specs: list[HeadSpec],
                  device: str | torch.device = "cpu") -> dict[str, dict[str, torch.Tensor]]:
    """Class-imbalance weights from the training labels, on `device` (the model's): pos_weight
    = sqrt(neg/pos) for binary heads (capped at 10), class weights ~ 1/sqrt(frequency) for
    empathy levels."""
    out = {}
    stacked = stack_labels(items, specs)
    for s in specs:
        target, weight = stacked[s.name]
        if s.level == "conversation" and not s.binary:
            continue
        if s.binary:
            w = weight.reshape(-1, s.size)
            t = target.reshape(-1, s.size)
            pos = (t * w).sum(0) / w.sum(0).clamp(min=1)
            out[s.name] = {"pos_weight": torch.sqrt((1 - pos) / pos.clamp(min=1e-3)).clamp(1, 10)
                           .reshape(s.shape).to(device)}
        else:
            w = weight[..., 0].reshape(-1, *s.shape[:-1], 1)
            freq = (target * w).sum(0) / w.sum(0).clamp(min=1)
            cw = freq.clamp(min=1e-3).rsqrt()
            out[s.name] = {"class_weight": (cw / (cw * freq).sum(-1, keepdim=True)).to(device)}
    return out


def batch_loss(model: QualityModel, batch: list[Prepared], specs: list[HeadSpec], balance: dict,
               anchor: tuple[QualityModel, dict[str, float]] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The sum of the heads' losses on their labels, plus its model's `anchor_loss` with
    `anchor`'s weights (by head name) when given; the parts by target ("anchor" for the latter)."""
    output = forward(model, batch)
    turn_logits, conv_logits = output.turn_logits, output.conversation_logits
    labels = stack_labels(batch, specs)
    total, parts = torch.zeros((), device=model.device), {}
    for s in specs:
        logits = conv_logits[s.name] if s.level == "conversation" else turn_logits[s.name]
        target, weight = (x.to(model.device) for x in labels[s.name])
        b = balance.get(s.name, {})
        loss = head_loss(s, logits, target, weight, b.get("pos_weight"), b.get("class_weight"))
        if s.pooling == "causal":
            at_turn = turn_hazard_loss(s, output, batch)
            loss = at_turn if loss is None else loss if at_turn is None else loss + at_turn
        if loss is not None:
            total = total + loss
            parts[s.target] = float(loss.detach())
    sourced = [not p.example.augmented for p in batch] if anchor else []
    if any(sourced):
        fixed, weights = anchor
        with torch.no_grad():
            kept = forward(fixed, [p for p, own in zip(batch, sourced) if own])
        drift = anchor_loss(output, kept, specs, torch.tensor(sourced), [p.turns for p in batch], weights)
        total = total + drift
        parts["anchor"] = float(drift.detach())
    return total, parts


def anchor_loss(output: ModelOutput, fixed: ModelOutput, specs: list[HeadSpec],
                read: torch.Tensor, turns: list[int], weights: dict[str, float] | None = None) -> torch.Tensor:
    """Sum over `specs` of the mean KL divergence of the fixed model's outputs from these, on
    every turn of the head's role and every conversation the fixed model read (`read`, one
    bool per conversation of `output`, `turns` its turn windows), labelled or not (0 where
    equal), each times its head's weight in `weights` (by head name; 1 without them, a head
    at 0 left out). The augmentations are left out: their labels are what a run teaches."""
    read = read.to(output.is_agent.device)
    windows = torch.repeat_interleave(read, torch.tensor(turns, device=read.device))
    conversations, kept = output.conversation_logits, fixed.conversation_logits  # merged once
    parts = []
    for s in specs:
        weight = 1.0 if weights is None else weights.get(s.name, 0.0)
        if not weight:
            continue
        if s.level == "conversation":
            new, old = conversations[s.name][read], kept[s.name]
        else:
            role = output.is_agent if s.level == "agent_turn" else ~output.is_agent
            new = output.turn_logits[s.name][windows & role]
            old = fixed.turn_logits[s.name][role[windows]]
        if new.numel():
            parts.append(weight * F.kl_div(_log_probs(s, new), _log_probs(s, old), log_target=True,
                                           reduction="none").sum(-1).mean())
    return torch.stack(parts).sum() if parts else torch.zeros((), device=output.is_agent.device)


def _log_probs(spec: HeadSpec, logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the head's classes (a binary head's two: no, yes) on the last axis."""
    logits = logits.float()
    if spec.binary:
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)
    return F.log_softmax(logits, -1)


def turn_hazard_loss(spec: HeadSpec, output: ModelOutput, batch: list[Prepared]) -> torch.Tensor | None:
    """Binary cross-entropy of a causal head's hazard at the turns labelled with when its
    target became needed (`turn_labels[target]`, `augment` "human_request_turn"); None when
    no turn of the batch is labelled."""
    if not any(spec.target in p.example.turn_labels for p in batch):
        return None
    values = turn_values(batch, spec.target)
    hazards = output.turn_hazards[spec.name]
    labelled = torch.from_numpy(~np.isnan(values)).to(hazards.device)
    target = torch.from_numpy(np.nan_to_num(values)).to(hazards.device)
    return F.binary_cross_entropy_with_logits(hazards.float()[labelled], target[labelled])


def consistency_loss(model: QualityModel, pairs: list[tuple[Prepared, Prepared]],
                     specs: list[HeadSpec]) -> torch.Tensor:
    """Mean squared difference, over the pairs and the heads `specs`, of each
    head's log-odds between the two readings of each pair: a dialogue with its closing
    pleasantry and without it, or the same conversation in a bot's and a human agent's words."""
    return torch.stack([gap.pow(2).mean() for gap in _pair_gaps(model, pairs, specs)]).mean()


def contrast_loss(model: QualityModel, pairs: list[tuple[Prepared, Prepared]],
                  specs: list[HeadSpec]) -> torch.Tensor:
    """Mean hinge, over the pairs and the heads `specs`, on how far each pair's first reading's
    log-odds stay below its second's plus CONTRAST_MARGIN: a fix the customer confirms against
    the same fix answered with the problem still open, an answer looped against a new one."""
    return torch.stack([F.relu(CONTRAST_MARGIN - gap).mean() for gap in _pair_gaps(model, pairs, specs)]).mean()


def _pair_gaps(model: QualityModel, pairs: list[tuple[Prepared, Prepared]],
               specs: list[HeadSpec]) -> list[torch.Tensor]:
    """Per head of `specs`, each pair's first reading's log-odds minus its second's
    (`_log_odds`)."""
    readings = [p for pair in pairs for p in pair]
    output = forward(model, readings)
    turns = torch.tensor([p.turns for p in readings], device=output.is_agent.device)
    conversations = output.conversation_logits  # merged once, not per head
    gaps = []
    for spec in specs:
        value = _log_odds(spec, output, conversations, turns)
        gaps.append(value[0::2] - value[1::2])
    return gaps


def _log_odds(spec: HeadSpec, output: ModelOutput, conversations: dict[str, torch.Tensor],
              turns: torch.Tensor) -> torch.Tensor:
    """Each reading's log-odds of `spec`: a binary head's logit, a 5-level head's
    log P(level > 0) / P(level <= 0) (`heads.p_positive`); a turn head's at the reading's last
    turn, but empathy's of its row score (`_row_empathy`)."""
    if spec.target == "empathy":
        score = _row_empathy(output.turn_logits[spec.name], output.is_agent, turns).clamp(1e-4, 1 - 1e-4)
        return score.log() - (-score).log1p()
    value = (conversations[spec.name] if spec.level == "conversation"
             else output.turn_logits[spec.name][turns.cumsum(0) - 1]).float()
    if spec.kind == "categorical":
        logp = F.log_softmax(value, -1)
        value = logp[:, POSITIVE_FROM:].logsumexp(-1) - logp[:, :POSITIVE_FROM].logsumexp(-1)
    return value


def _row_empathy(logits: torch.Tensor, is_agent: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each reading's empathy as its row reports it (`outputs.assemble`), before calibration:
    the mean over its agent turns of `heads.empathy_score`, from the head's logits (windows,
    mechanisms, levels) and each reading's number of windows, `turns`; 0 for a reading with no
    agent turn."""
    score = empathy_score(F.softmax(logits.float(), -1))
    reading = torch.repeat_interleave(torch.arange(len(turns), device=logits.device), turns)
    agent = is_agent.float()
    sums = torch.zeros(len(turns), device=logits.device).index_add(0, reading, score * agent)
    return sums / torch.zeros_like(sums).index_add(0, reading, agent).clamp(min=1.0)


@torch.no_grad()
def evaluate_loss(model: QualityModel, items: list[Prepared], specs: list[HeadSpec],
                  balance: dict, batch_tokens: int) -> dict[str, float]:
    """Mean dev loss per target (and its sum, "total"), for early stopping; leaves the model in
    eval mode (the loop sets its training mode again, `_train_mode`)."""
    model.eval()
    sums: dict[str, list[float]] = {}
    for batch in batches(items, batch_tokens * 4, random.Random(0)):
        _, parts = batch_loss(model, batch, specs, balance)
        for k, v in parts.items():
            sums.setdefault(k, []).append(v)
    out = {k: float(np.mean(v)) for k, v in sums.items()}
    out["total"] = float(sum(out.values()))
    return out


# ------------------------------------------------------------------------------ loop
def train(args: TrainingArgs, select: Callable[[QualityModel], float] | None = None) -> TrainResult:
    """Train, keeping the weights with the lowest dev loss, or with `select`'s highest value
    (for example a transfer metric on sources the heads do not train on: the benchmark's
    cross-source selection pairs); resumable from the checkpoint in `output_dir` after an
    interruption. Returns the model (not yet calibrated or saved)."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _initial_model(args)
    anchored = _anchor(model, args)
    if args.refit_heads:
        if not model.config.trained_heads:
            raise ValueError(f"refit_heads refits the heads of a trained model; {args.init} is not one")
        model.conversation_heads = model.new_conversation_heads()
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("conversation_heads."))
    model.to(args.device)
    _train_mode(model, args)
    examples = args.all_examples()
    train_examples, dev_examples = _splits(examples, args)
    train_examples = taught(train_examples, args.teacher_labels, args.teacher_weight)
    wanted = ([s.target for s in model.specs if s.level == "conversation"] if args.refit_heads
              else args.heads)
    specs = _trained_specs(model, train_examples, wanted)
    targets = {s.target for s in specs}

    def labelled(chosen: list[Example]) -> list[Example]:
        """Named heads train only on the conversations that label one of them."""
        if args.heads is None:
            return chosen
        return [e for e in chosen if targets & {*e.labels, *e.turn_labels}]

    builder = window_builder(model)
    train_items = prepare(labelled(train_examples), builder, args.max_turns)
    dev_items = prepare(dev_examples, builder, args.max_turns)
    # drawn from every training conversation: a named head's augmentations can be made from a
    # source that does not label it (two-turn answers from Bitext for repeat inquiry)
    augmenter = (Augmenter(train_examples, args.augment_kinds)
                 if args.augment or any(getattr(args, name) for name in PAIRS_NEED) else None)
    resolution = _pairs_head(specs, args, "resolution", ("closing_consistency", "reply_contrast"))
    if args.closing_consistency and resolution.name in model.config.closing_apart:
        log.warning("closing_consistency: %s reads before the closing (closing_apart), so a closing "
                    "pair's two readings differ only by dropout; the loss cannot teach it to ignore "
                    "closings", resolution.name)
    breakdown = _pairs_head(specs, args, "breakdown", ("loop_contrast",))
    escalation = _pairs_head(specs, args, "escalation", ("request_contrast",))
    styled = _styled_heads(specs, args)
    prepared_twins = _prepared_twins(builder, args.max_turns, args.twin_sets) if styled else []
    balance = label_balance(train_items, specs, args.device)
    epoch_tokens = sum(p.tokens for p in train_items)
    budget = min(args.max_train_tokens, args.max_epochs * epoch_tokens)  # tokens this run sees
    est_steps = math.ceil(budget / args.batch_tokens)
    log.info("training %s on %d conversations (%d tokens a pass), dev %d; heads %s",
             args.name, len(train_items), epoch_tokens, len(dev_items), [s.target for s in specs])

    if args.freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    added = tuple(prefix for prefixes in ADDED_READS.values() for prefix in prefixes)
    shared = _shared_layers(model, specs) if args.shared_layers else set()
    heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad
             and (args.heads is None or any(s.owns(n) for s in specs) or n in shared)
             and (not args.reads_only or n.startswith(added))]
    if args.reads_only and not heads:
        raise ValueError(f"reads_only: the heads trained here have no added read "
                         f"({', '.join(ADDED_READS)}); name them with those options")
    groups = [{"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": args.lr},
              {"params": heads, "lr": args.head_lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=args.weight_decay)
    warmup = max(1, int(args.warmup * est_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.05, 1 - s / est_steps)))

    state = {"step": 0, "tokens": 0, "epoch": 0, "in_epoch": 0, "seconds": 0.0,
             "best": math.inf, "best_step": 0, "dev": []}
    best_path, ckpt_path = out / "best.pt", out / CHECKPOINT
    if ckpt_path.is_file():
        saved = torch.load(ckpt_path, weights_only=False)
        if saved["args"] != _args_key(args):
            raise ValueError(f"{ckpt_path} was written by a run with other arguments; "
                             "remove it or train into another output_dir")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = saved["state"]
        log.info("resumed at step %d (%d tokens)", state["step"], state["tokens"])

    eval_every = max(1, budget // args.evals)
    next_eval = (state["tokens"] // eval_every + 1) * eval_every
    bar = _bar(args, state, budget)
    start = time.perf_counter() - state["seconds"]
    while state["tokens"] < args.max_train_tokens and state["epoch"] < args.max_epochs:
        rng = random.Random(args.seed * 1000 + state["epoch"])
        items = train_items + (prepare(labelled(augmenter.make(int(args.augment * len(train_items)), rng)),
                                       builder, args.max_turns) if args.augment else [])
        plan = batches(items, args.batch_tokens, rng)
        pairs = _drawn_pairs(augmenter.closing_pair, len(plan) * args.closing_pairs, rng, builder, args.max_turns,
                             "closing_consistency") if args.closing_consistency else []
        twins = [rng.choice(prepared_twins) for _ in range(len(plan) * args.style_pairs)] if styled else []
        replies = _drawn_pairs(augmenter.reply_pair, len(plan) * args.reply_pairs, rng, builder, args.max_turns,
                               "reply_contrast") if args.reply_contrast else []
        loops = _drawn_pairs(augmenter.loop_pair, len(plan) * args.loop_pairs, rng, builder, args.max_turns,
                             "loop_contrast") if args.loop_contrast else []
        requests = _drawn_pairs(augmenter.request_pair, len(plan) * args.request_pairs, rng, builder,
                                args.max_turns, "request_contrast") if args.request_contrast else []
        for batch in plan[state["in_epoch"]:]:
            loss, parts = batch_loss(model, batch, specs, balance, anchored)
            n = sum(p.tokens for p in batch)
            for weight, heads, drawn, per_step, pair_loss in (
                    (args.closing_consistency, [resolution], pairs, args.closing_pairs, consistency_loss),
                    (args.style_consistency, styled, twins, args.style_pairs, consistency_loss),
                    (args.reply_contrast, [resolution], replies, args.reply_pairs, contrast_loss),
                    (args.loop_contrast, [breakdown], loops, args.loop_pairs, contrast_loss),
                    (args.request_contrast, [escalation], requests, args.request_pairs, contrast_loss)):
                step_pairs = drawn[state["in_epoch"] * per_step:(state["in_epoch"] + 1) * per_step]
                if step_pairs:
                    loss = loss + weight * pair_loss(model, step_pairs, heads)
                    n += sum(p.tokens for pair in step_pairs for p in pair)
            if loss.requires_grad:  # else no item of the batch labels a trained head
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            schedule.step()
            state["step"] += 1
            state["in_epoch"] += 1
            state["tokens"] += n
            state["seconds"] = time.perf_counter() - start
            bar.update(n)
            bar.set_postfix_str(f"loss {float(loss.detach()):.3f}")
            done = state["tokens"] >= args.max_train_tokens or (
                state["in_epoch"] == len(plan) and state["epoch"] + 1 >= args.max_epochs)
            if state["tokens"] >= next_eval or done:
                next_eval += eval_every
                dev = evaluate_loss(model, dev_items, specs, balance, args.batch_tokens)
                dev["step"], dev["tokens"] = state["step"], state["tokens"]
                if select is not None:
                    dev["selection"] = _selection(select, model)
                _train_mode(model, args)
                state["dev"].append(dev)
                log.info("dev at step %d: %s", state["step"], json.dumps(
                    {k: round(v, 4) for k, v in dev.items()}))
                worse = -dev["selection"] if select is not None else dev["total"]
                if worse < state["best"]:
                    state["best"], state["best_step"] = worse, state["step"]
                    torch.save(model.state_dict(), best_path)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "state": state,
                            "args": _args_key(args)}, ckpt_path)
            if done:
                break
        else:
            state["epoch"] += 1
            state["in_epoch"] = 0
    bar.close()
    model.load_state_dict(torch.load(best_path))
    model.eval()
    model.config.trained_heads = sorted(set(model.config.trained_heads) | {s.name for s in specs},
                                        key=model.config.heads.index)
    model.config.name, model.config.version = args.name, args.version
    return TrainResult(model, state["step"], state["tokens"], state["seconds"], state["best_step"],
                       state["dev"])


def _anchor(model: QualityModel, args: TrainingArgs) -> tuple[QualityModel, dict[str, float]] | None:
    """A frozen copy of the initial model and each head's weight, for `anchor_loss`; None
    when every weight is 0."""
    weights = {s.name: args.anchor_targets.get(s.target, args.anchor) for s in model.specs}
    if not any(weights.values()):
        return None
    if not model.config.trained_heads:
        raise ValueError(f"anchor keeps a trained model's outputs; {args.init} has no trained heads")
    fixed = copy.deepcopy(model).to(args.device).eval()
    fixed.requires_grad_(False)
    return fixed, weights


def _train_mode(model: QualityModel, args: TrainingArgs) -> None:
    """Dropout on where weights train: a refit reads the frozen layers as scoring does."""
    model.train()
    if args.refit_heads:
        for module in (model.encoder, model.turn_context, model.turn_heads):
            if module is not None:
                module.eval()


def _selection(select: Callable[[QualityModel], float], model: QualityModel) -> float:
    model.eval()
    value = float(select(model))
    if not math.isfinite(value):
        raise ValueError(f"the selection metric returned {value}; it must be a finite number")
    return value


def _initial_model(args: TrainingArgs) -> QualityModel:
    window = {k: v for k, v in (("max_turn_tokens", args.max_turn_tokens),
                                ("max_context_tokens", args.max_context_tokens)) if v is not None}
    if Path(args.init, "config.json").is_file() and _is_qualaudit(Path(args.init)):
        if window:
            raise ValueError(f"{args.init} is a saved model: it keeps its own turn window "
                             f"(max_turn_tokens, max_context_tokens); do not pass {sorted(window)}")
        model = QualityModel.from_pretrained(args.init)
        if args.reading is not None and args.reading != model.config.reading:
            model = _with_reading(model, args.reading)
        for read in ADDED_READS:
            if getattr(args, read) is not None:
                model = _with_read(model, read, _head_names(model.config.heads, getattr(args, read), read))
        if args.context_layers is None or args.context_layers == model.config.context_layers:
            return model
        return _with_context_layers(model, args.context_layers)
    design = {k: v for k, v in (("context_layers", args.context_layers),
                                ("reading", args.reading)) if v is not None}
    for read in ADDED_READS:
        if getattr(args, read) is not None:
            design[read] = _head_names(list(DEFAULT_HEADS), getattr(args, read), read)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        return QualityModel.from_encoder(args.init, **window, **design)


def _head_names(heads: list[str], targets: list[str], option: str) -> list[str]:
    """The model's head names of `targets` (as `TrainingArgs.heads` names them)."""
    by_target = {HEAD_SPECS[h].target: h for h in heads}
    unknown = [t for t in targets if t not in by_target]
    if unknown:
        raise ValueError(f"{option}: unknown target(s) {unknown}; the model has {sorted(by_target)}")
    return [by_target[t] for t in targets]


def _pairs_head(specs: list[HeadSpec], args: TrainingArgs, target: str, options: tuple[str, ...]) -> HeadSpec | None:
    """The head of `target` that the pair losses `options` train, when one of them is asked for."""
    asking = [name for name in options if getattr(args, name)]
    if not asking:
        return None
    head = next((s for s in specs if s.target == target), None)
    if head is None:
        raise ValueError(f"{asking[0]} trains the {target} head, which this run does not train")
    return head


def _shared_layers(model: QualityModel, specs: list[HeadSpec]) -> set[str]:
    """The names of the conversation heads' shared layers, which `shared_layers` trains: they
    change every conversation head's scores, so every one must be trained (and calibrated) too."""
    untrained = [s.target for s in model.specs if s.level == "conversation" and s not in specs]
    if untrained:
        raise ValueError(f"shared_layers changes every conversation head's scores: name "
                         f"{', '.join(untrained)} too")
    return {n for n, _ in model.named_parameters() if n.startswith("conversation_heads.")
            and not any(s.owns(n) for s in model.specs)}


def _styled_heads(specs: list[HeadSpec], args: TrainingArgs) -> list[HeadSpec]:
    """The heads `style_consistency` holds alike on the twins: every trained conversation head,
    and with `style_empathy` the empathy head."""
    if not args.style_consistency:
        return []
    styled = [s for s in specs if s.level == "conversation"]
    if not styled:
        raise ValueError("style_consistency trains conversation heads, and this run trains none")
    if args.style_empathy:
        empathy = next((s for s in specs if s.target == "empathy"), None)
        if empathy is None:
            raise ValueError("style_empathy holds the empathy head alike, and this run does not train it")
        styled.append(empathy)
    return styled


# the pair losses whose pairs the Augmenter draws, and what each needs the training data to hold
PAIRS_NEED = {"closing_consistency": "STC-3 dialogues with or without a closing",
              "reply_contrast": "STC-3 dialogues: resolved ones whose customer confirms a fix in words, "
                                "and unresolved ones whose customer has a last word",
              "loop_contrast": "STC-3 dialogues with a new agent answer after a customer turn",
              "request_contrast": "STC-3 or USS dialogues with a customer turn after an agent turn"}


def _drawn_pairs(draw: Callable[[random.Random], tuple[Example, Example] | None], n: int,
                 rng: random.Random, builder: WindowBuilder, max_turns: int,
                 option: str) -> list[tuple[Prepared, Prepared]]:
    pairs = [pair for _ in range(n) if (pair := draw(rng)) is not None]
    if not pairs:
        raise ValueError(f"{option} makes its pairs from {PAIRS_NEED[option]}, and the "
                         "training data has none")
    made = prepare([e for pair in pairs for e in pair], builder, max_turns)
    return list(zip(made[0::2], made[1::2]))


def _prepared_twins(builder: WindowBuilder, max_turns: int,
                    sets: tuple[str, ...]) -> list[tuple[Prepared, Prepared]]:
    """The training twins of the named sets (`augment.style_twins`), each (bot, human),
    prepared once for the run."""
    made = prepare([e for name in sets for twin in style_twins("train", name) for e in twin],
                   builder, max_turns)
    return list(zip(made[0::2], made[1::2]))


def _with_reading(model: QualityModel, reading: str) -> QualityModel:
    """The saved model, every weight kept, reading transcripts another way; its calibration is
    dropped, being refitted after training."""
    return _redesigned(model, reading=reading)


# the reads a saved model's heads can be given at zero: config field -> the weights they add
ADDED_READS = {"last_turns": ("conversation_heads.last.",),
               "echo": ("turn_heads.echo.", "conversation_heads.echo.")}


def _with_read(model: QualityModel, read: str, heads: list[str]) -> QualityModel:
    """The saved model with `heads` given the `read` (an `ADDED_READS` field), the ones it
    lacks added at zero: its scores, and so its calibration, are unchanged."""
    has = getattr(model.config, read)
    dropped = [h for h in has if h not in heads]
    if dropped:
        raise ValueError(f"{read}: the model's {dropped} have it with trained weights; name them too")
    if set(heads) == set(has):
        return model
    return _redesigned(model, ADDED_READS[read], model.calibration,
                       **{read: [h for h in model.config.heads if h in heads]})


def _with_context_layers(model: QualityModel, layers: int) -> QualityModel:
    """The saved model with `layers` new turn-context layers (starting as the identity) in
    place of none; its calibration is dropped, being refitted after training."""
    if model.config.context_layers:
        raise ValueError(f"the model already has {model.config.context_layers} turn-context "
                         f"layers; train it as it is (context_layers=None) or from the encoder")
    return _redesigned(model, "turn_context.", context_layers=layers)


def _redesigned(model: QualityModel, added: str | tuple[str, ...] | None = None,
                calibration: Calibration | None = None, **changes: Any) -> QualityModel:
    """The saved model with the config fields `changes`, every weight kept; the weights whose
    names start with `added` are new, as initialised. `calibration` goes with it (None: none,
    refitted after training)."""
    new = QualityModel(replace(model.config, **changes), model.encoder, model.tokenizer, calibration)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(added and k.startswith(added) for k in missing)
    return new


def _is_qualaudit(directory: Path) -> bool:
    try:
        return "qualaudit_format" in json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False


def _splits(examples: list[Example], args: TrainingArgs) -> tuple[list[Example], list[Example]]:
    """Train (USS subsampled to `uss_share`) and dev for early stopping (its "stop" half, at
    most `dev_per_source` a source; the other half is kept for the calibration)."""
    rng = random.Random(args.seed)
    train_set = [e for e in by_split(examples, "train")
                 if e.source != "uss" or rng.random() < args.uss_share]
    dev: list[Example] = []
    for source in sorted({e.source for e in examples}):
        rows = [e for e in by_split(examples, "dev:stop") if e.source == source]
        dev += rng.sample(rows, min(len(rows), args.dev_per_source))
    return train_set, dev


def taught(examples: list[Example], paths: tuple[str, ...], weight: float) -> list[Example]:
    """`examples` with each conversation label that a teacher file covers mixed with the
    teacher's probabilities (`TrainingArgs.teacher_labels`); copies, the originals untouched.
    A file that covers none of them, or a label of another shape, is an error naming it."""
    teacher: dict[str, dict[str, list]] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            for target, entry in data.items():
                teacher.setdefault(target, {}).update(entry["labels"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a teacher labels file "
                             '({target: {"labels": {key: probabilities}}}): ' + repr(exc)) from exc
    out, used = [], dict.fromkeys(teacher, 0)
    for e in examples:
        key = e.key
        mixed = {}
        for target, labels in teacher.items():
            if target not in e.labels or key not in labels:
                continue
            own = np.asarray(e.labels[target], dtype=np.float32)
            probs = np.asarray(labels[key], dtype=np.float32)
            taught_label = probs[1] if own.shape == () and probs.shape == (2,) else probs
            if taught_label.shape != own.shape:
                raise ValueError(f"teacher label of {target} for {key} has shape {probs.shape}; "
                                 f"the training label has {own.shape}")
            mixed[target] = (weight * taught_label + (1 - weight) * own).astype(np.float32)
            used[target] += 1
        out.append(replace(e, labels={**e.labels, **mixed}) if mixed else e)
    unused = [t for t, n in used.items() if n == 0]
    if unused:
        raise ValueError(f"teacher labels for {unused} ({', '.join(paths)}) cover no training "
                         "conversation that has that label")
    for target, n in used.items():
        log.info("teacher labels: %s on %d training conversations (weight %.2f)", target, n, weight)
    return out


def _trained_specs(model: QualityModel, examples: list[Example], heads: list[str] | None) -> list[HeadSpec]:
    labelled = {t for e in examples for t in (*e.labels, *e.turn_labels)}
    by_target = {s.target: s for s in model.specs}
    wanted = heads if heads is not None else sorted(labelled & set(by_target))
    unknown = [h for h in wanted if h not in by_target]
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}; the model has {sorted(by_target)}")
    missing = [h for h in wanted if h not in labelled]
    if missing:
        raise ValueError(f"no training labels for {missing}")
    return [by_target[h] for h in wanted]


def _args_key(args: TrainingArgs) -> dict:
    key = asdict(args)
    key.pop("examples")
    key.pop("progress")
    return key


def _bar(args: TrainingArgs, state: dict, budget: int):
    from tqdm import tqdm

    return tqdm(total=budget, initial=state["tokens"], unit="tok", unit_scale=True,
                disable=not args.progress, dynamic_ncols=True, mininterval=5)



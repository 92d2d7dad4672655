"""The batch scorer: chunks of transcripts through the model's forward pass on a device, at a
precision, with tokenizing prefetched and running out of memory handled; rows come back in
input order. What the logits become (calibration, evidence, rows) is `outputs`."""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import os
import queue
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .batching import TurnWindows, builder_for, collate, token_budget_batches, within_max_turns
from .errors import InputError, ModelLoadError, QualauditError
from .io import read_transcripts
from .model import QualityModel, default_model_path
from .outputs import CONVERSATION_TARGETS, score_rows
from .schema import ROLES, ModelInfo, Transcript, TranscriptScore

DEFAULT_MAX_TURNS = 1000
Precision = Literal["auto", "fp32", "bf16"]
Quantize = Literal["int8"]
# Padded tokens per encoder batch when none is given: a GPU needs large batches to be busy.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}

log = logging.getLogger("qualaudit.scorer")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 natively: a GPU that supports it, or a CPU with AVX-512
    BF16 or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def bound_onednn_cache() -> None:
    """Bound oneDNN's cache of compiled per-shape kernels (torch's CPU matmuls) to 256 shapes.

    It keeps one per input shape, up to 1024 by default at about 1 MB each: as batch shapes
    keep changing, a long CPU run's memory grew by 0.9 GB after the first 25,000 turns; 256
    held it level over the 53,000 turns measured, at no measured cost in speed
    (benchmarks/README.md). oneDNN reads the variable when it first runs, so a process that
    used it earlier, or that sets the variable itself, keeps its own value. Called when a CPU
    scorer starts, never at import.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "256")


@dataclass
class ScoringStats:
    """Running totals of what the scorer has read (for progress bars and summaries); `tokens`
    counts the encoder's real tokens (turn, context and special tokens, no padding),
    `padded_tokens` the tokens it ran, padding included (so 1 - tokens / padded_tokens is
    the share of its work spent on padding); `oom_splits` the batches split in two after
    running out of memory."""

    transcripts: int = 0
    turns: int = 0
    tokens: int = 0
    oom_splits: int = 0
    padded_tokens: int = 0


@dataclass
class _Chunk:
    """A chunk of transcripts ready for the encoder: their turn windows are built; `dropped`
    is what `within_max_turns` left out of each."""

    transcripts: list[Transcript]
    dropped: list[list[int] | None]
    windows: TurnWindows


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

    Precision: "auto" (the default) is bf16 where the device runs it natively (a GPU with
    bf16, a CPU with AVX-512 BF16 or AMX; see `native_bf16`) and fp32 elsewhere; "fp32" gives
    the same scores everywhere; "bf16" runs the encoder in bfloat16 (weights and activations;
    turn states are pooled in float32). `quantize="int8"` (CPU only) runs the encoder's
    Linear layers with torch dynamic int8 quantization (with fp32 elsewhere). Reduced
    precisions run on a copy of the encoder, so the model passed in is left as it is; every
    row's `model.precision` says which one ran.

    Speed settings: `max_batch_tokens` padded tokens per encoder batch (default 8192 on CPU,
    65536 on CUDA); a batch of at least an eighth of that is closed before a window that
    would make more than `max_padding` of its tokens padding. `prefetch` builds the next
    chunk's turn windows (tokenizing) in a background thread while this one is encoded
    (default: on CUDA, where the GPU would otherwise wait for it; on a CPU both compete for
    the same cores). On CUDA, batches are copied from pinned memory without blocking.

    Example:
        >>> auditor = Auditor.from_pretrained("models/default")
        >>> result = auditor.score({"id": "t1", "messages": [
        ...     {"role": "user", "content": "My card was charged twice."},
        ...     {"role": "assistant", "content": "Sorry about that! I've refunded it."}]})
        >>> result.resolution, result.evidence["resolution"][0].index
    """

    def __init__(self, model: QualityModel, *, device: str | torch.device | None = None,
                 precision: Precision = "auto", max_batch_tokens: int | None = None,
                 chunk_turns: int = 2048, top_evidence: int = 3,
                 max_turns: int | None = DEFAULT_MAX_TURNS,
                 max_turn_chars: int | None = None, quantize: Quantize | None = None,
                 prefetch: bool | None = None, max_padding: float = 0.02) -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if quantize and precision == "bf16":
            raise ValueError("quantize='int8' replaces the encoder's Linear layers with int8 ones; "
                             "use it with precision='fp32', not bf16")
        too_small = max_batch_tokens is not None and max_batch_tokens < 1
        if too_small or chunk_turns < 1 or top_evidence < 0:
            raise ValueError("max_batch_tokens and chunk_turns must be >= 1, top_evidence >= 0")
        if not 0 <= max_padding <= 1:
            raise ValueError(f"max_padding must be in [0, 1], found {max_padding}")
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (or None), found {max_turns}")
        targets = {s.target for s in model.specs}
        missing = [t for t in CONVERSATION_TARGETS if t not in targets]
        if missing:
            raise ModelLoadError(f"the model has no conversation head for {missing}; an "
                                 "Auditor needs resolution, satisfaction, repeat_inquiry, escalation")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise QualauditError(f"device {str(self.device)!r} asked for, but CUDA is not "
                                 "available here; use device='cpu' (--device cpu)")
        if quantize and self.device.type != "cpu":
            raise QualauditError(f"quantize='int8' (--quantize int8) uses torch's dynamic "
                                 f"quantization, which runs on the CPU only, not on "
                                 f"{str(self.device)!r}; on a GPU use precision='bf16' "
                                 "(--precision bf16), or score on the CPU (--device cpu)")
        if precision == "auto":
            precision = "bf16" if not quantize and native_bf16(self.device) else "fp32"
        if self.device.type == "cpu":
            bound_onednn_cache()
        self.model = model.to(self.device).eval()
        if quantize == "int8":
            self.model = _with_encoder(self.model, _dynamic_int8(self.model.encoder))
        elif precision == "bf16":
            self.model = _with_encoder(self.model,
                                       copy.deepcopy(self.model.encoder).to(torch.bfloat16))
        self.precision: Literal["fp32", "bf16"] = precision
        self.quantize = quantize
        self.info = ModelInfo(model.config.name, model.config.version, model.weights_sha256,
                              trained=not model.config.untrained_heads,
                              precision=quantize or precision)
        if max_batch_tokens is None:
            max_batch_tokens = DEFAULT_MAX_BATCH_TOKENS.get(self.device.type, 8192)
        self.max_batch_tokens = max_batch_tokens
        self.max_padding = max_padding
        self.prefetch = self.device.type == "cuda" if prefetch is None else bool(prefetch)
        self.chunk_turns = chunk_turns
        self.top_evidence = top_evidence
        self.max_turns = max_turns
        self.builder = builder_for(model.config, model.tokenizer, max_turn_chars)
        self._fitting_batch_tokens = max_batch_tokens  # lowered after running out of memory
        self.stats = ScoringStats()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **kwargs: Any) -> Auditor:
        """An Auditor for a saved model (directory or hub id); no path means the bundled default."""
        if path is None:
            path = default_model_path()
            if path is None:
                raise ModelLoadError(
                    "no default model found: it ships as models/default in the source "
                    "repository (install it with `pip install -e .`); or pass a model directory")
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
        reader_kwargs.setdefault("on_error", "raise")
        for chunk in self.score_in_chunks(read_transcripts(source, **reader_kwargs)):
            yield from chunk

    def score_in_chunks(self, transcripts: Iterable[Transcript]) -> Iterator[list[TranscriptScore]]:
        """Score transcripts already validated by `qualaudit.io` (`iter_records`,
        `read_transcripts`), one list of rows per chunk of about `chunk_turns` turns: the unit
        that writers flush to disk at a time. With `prefetch`, the next chunk is read and
        tokenized in a background thread meanwhile (so `transcripts` is iterated there); an
        error it raises comes out here after the chunks before it."""
        chunks = self._prepared_chunks(iter(transcripts))
        if self.prefetch:
            chunks = _prefetched(chunks)
        try:
            for chunk in chunks:
                yield self._score_prepared(chunk)
                release_freed_memory()
        finally:
            chunks.close()  # stops (and waits for) the prefetching thread

    def score_transcripts(self, transcripts: Iterable[Transcript]) -> Iterator[list[TranscriptScore]]:
        """Deprecated (0.3): renamed `score_in_chunks`; this alias goes in 0.4."""
        warnings.warn("Auditor.score_transcripts is deprecated: use Auditor.score_in_chunks "
                      "(the same call); the alias goes in qualaudit 0.4", DeprecationWarning,
                      stacklevel=2)
        return self.score_in_chunks(transcripts)

    def score_chunks(self, source: Any, **reader_kwargs: Any) -> Iterator[list[TranscriptScore]]:
        """Deprecated (0.3): use `score_iter` (rows one by one) or `score_in_chunks` over
        `qualaudit.io.read_transcripts(source)`; this alias goes in 0.4."""
        warnings.warn("Auditor.score_chunks is deprecated: use Auditor.score_iter, or "
                      "Auditor.score_in_chunks(read_transcripts(source)); the alias goes in "
                      "qualaudit 0.4", DeprecationWarning, stacklevel=2)
        reader_kwargs.setdefault("on_error", "raise")
        return self.score_in_chunks(read_transcripts(source, **reader_kwargs))

    # --------------------------------------------------------------- internals
    def _prepared_chunks(self, transcripts: Iterator[Transcript]) -> Iterator[_Chunk]:
        while True:
            chunk, dropped, n_turns = [], [], 0
            for transcript in transcripts:
                transcript, left_out, _ = within_max_turns(transcript, self.max_turns)
                chunk.append(transcript)
                dropped.append(left_out)
                n_turns += len(transcript.scored_turns)
                if n_turns >= self.chunk_turns:
                    break
            if not chunk:
                return
            yield self._prepare(chunk, dropped)

    def _prepare(self, chunk: list[Transcript],
                 dropped: list[list[int] | None] | None = None) -> _Chunk:
        """Check a chunk and build its turn windows: the CPU work that can run ahead."""
        for transcript in chunk:  # cheap guards for Transcripts that skipped qualaudit.io
            if not transcript.scored_turns or any(t.role not in ROLES for t in transcript.turns):
                raise InputError("expected a transcript validated by qualaudit.io (canonical "
                                 "roles, at least one customer or agent turn)",
                                 transcript_id=transcript.id,
                                 hint="Read it with qualaudit.io.read_transcripts first")
        return _Chunk(chunk, dropped or [None] * len(chunk), self.builder.build(chunk))

    @torch.inference_mode()
    def _score_prepared(self, prepared: _Chunk) -> list[TranscriptScore]:
        windows = prepared.windows
        output = self.model(windows, with_evidence=True, encode=self._encode,
                            group_turns=self.chunk_turns)
        lengths = windows.lengths
        self.stats.transcripts += len(prepared.transcripts)
        self.stats.turns += windows.n_turns
        self.stats.tokens += sum(lengths)
        return score_rows(output, prepared.transcripts, windows, self.model.specs,
                          self.model.calibration, self.info, self.top_evidence, prepared.dropped,
                          self.model.config.languages)

    def _encode(self, windows: TurnWindows) -> torch.Tensor:
        """(n_states, H) float32 states: every turn's, then every second reading's
        (`TurnWindows.reread`). Batches are queued without waiting for the device (pinned host
        memory, non-blocking copies on CUDA) and their states put back in order once, at the end."""
        lengths = windows.lengths
        hidden = self.model.encoder.config.hidden_size
        pad_id = self.model.tokenizer.pad_token_id or 0
        pin = self.device.type == "cuda"
        pending = self._plan(list(range(len(lengths))), lengths)[::-1]  # a stack
        order: list[int] = []
        parts: list[torch.Tensor] = []
        while pending:
            idx = pending.pop()
            out_of_memory = False
            try:
                batch = collate(windows, idx, pad_id, self.model.uses_token_types,
                                pin_memory=pin)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                turns, spans = windows.turns_in(idx)
                parts.append(self.model.encode_turns(**batch, spans=spans))
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not _is_out_of_memory(exc):
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the handler, so that the failed batch can be freed
                batch = None
                halves = self._split_after_out_of_memory(idx, lengths)
                # the batches not tried yet are planned again under the lowered budget
                rest = self._plan([i for b in pending for i in b], lengths)
                pending = rest[::-1] + halves[::-1]
                continue
            order += turns
            self.stats.padded_tokens += len(idx) * max(lengths[i] for i in idx)
        states = torch.empty((windows.n_states, hidden), dtype=torch.float32, device=self.device)
        if parts:
            where = torch.tensor(order, pin_memory=pin).to(self.device, non_blocking=True)
            states[where] = torch.cat(parts)
        return states

    def _plan(self, windows: list[int], lengths: list[int]) -> list[list[int]]:
        """Batches of these window indices, longest first, under the current token budget."""
        budget = min(self.max_batch_tokens, self._fitting_batch_tokens)
        batches = token_budget_batches([lengths[i] for i in windows], budget, self.max_padding,
                                       budget // 8)
        return [[windows[k] for k in batch] for batch in batches]

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


def _is_out_of_memory(exc: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, and the plain RuntimeErrors other backends raise for it."""
    message = str(exc).lower()
    return (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in message
            or "can't allocate memory" in message)


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`); False where
    there is no glibc. Encoder batches of ever-changing shapes free large buffers between
    small long-lived ones (oneDNN's per-shape primitives), and glibc returns such holes only
    when asked: without this, a 15,000-turn CPU run grew by 680 MB instead of 390
    (benchmarks/README.md). Called once per chunk, where it costs no measurable time."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl and others lack it
    except (OSError, AttributeError):
        return None


def _dynamic_int8(encoder: torch.nn.Module) -> torch.nn.Module:
    """A copy of `encoder` with int8 Linear layers (torch dynamic quantization: int8 weights
    per output channel, activations quantized per batch). CPU only."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch announces that these APIs move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*quantiz.*deprecated")
        return quantize_dynamic(encoder, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8, inplace=False)


def _with_encoder(model: QualityModel, encoder: torch.nn.Module) -> QualityModel:
    """A model sharing `model`'s heads, tokenizer and calibration, with another encoder (a
    reduced-precision copy), so that the model the caller passed in is left as it is."""
    # The heads built here are thrown away: draw their initial weights from a forked
    # generator, not the caller's.
    with torch.random.fork_rng(devices=[]):
        other = QualityModel(model.config, encoder, model.tokenizer, model.calibration)
    for name, module in model.named_children():
        if name != "encoder":
            setattr(other, name, module)
    return other.eval()


_DONE = object()


@dataclass
class _Raised:
    error: BaseException


def _prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """`items`, produced by a background thread up to `depth` ahead, in order. An exception
    in the thread is raised here in its place; closing this generator (or an error in the
    consumer) stops the thread and waits for it, closing `items` there."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
            else:
                offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_Raised(exc))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="qualaudit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()

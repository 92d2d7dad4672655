"""Throughput benchmark: the qualaudit scorer against what a user would write without it.

One run, on the same weights, inputs, thread count, tokenizer and attention implementation:

(a) naive: the model's own encoder and heads (`QualityModel.encode_turns`, `turn_heads`,
    `conversation_heads`, then the same calibration and evidence), transcripts in input
    order, each transcript's turn windows tokenized as it comes, batches of 32 windows padded
    to the longest, fp32, no sorting, one transcript at a time through the conversation heads;
(b) sentence-transformers `encode` (length-sorted batches of 32) over the same
    turn-with-context texts, on the same encoder module. Its pipeline ends in a
    normalisation layer and has no heads: it is compared on speed only;
(c) the qualaudit `Auditor` in each precision variant (fp32, bf16, and int8 on a CPU); the
    best one for the device is the fastest whose answers match (a): fp32 within 1e-4 on every
    output; a reduced precision only with a trained model and at most `--max-flip-rate` of
    the decisions at 0.5 flipped.

Each method runs once to warm up (that run's outputs are the ones compared), then
`--repeats` timed runs; the median is reported. Tokens are real tokens (turn, context and
special tokens, no padding). The result is one flat JSON dict (see benchmarks/README.md).

`--scale` instead writes a JSONL corpus of N turns for each N of `--turns`, scores it with
`qualaudit.score_to_file` (streaming), and samples resident memory and throughput per chunk.

Usage:
    python benchmarks/throughput.py [--model DIR|tiny] [--transcripts N] [--device cpu|cuda]
        [--workload synthetic|public] [--data-dir ../shared/data] [--seed 0] [--repeats 3]
        [--threads T] [--variants fp32,bf16,int8] [--best auto|fp32|bf16|int8]
        [--max-flip-rate 0.005] [--max-batch-tokens N] [--max-padding 0.02] [--chunk-turns N]
        [--encoder-only] [--no-sentence-transformers] [--peak-tflops X] [--json PATH] [--quiet]
    python benchmarks/throughput.py --scale [--turns 10000,100000] [--model DIR|tiny]
        [--device cpu|cuda] [--precision fp32|bf16] [--quantize int8] [--chunk-turns N]
        [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualaudit import Auditor
from qualaudit.batching import TurnWindows, collate, within_max_turns
from qualaudit.heads import ESCALATION_SIGNALS
from qualaudit.io import read_transcripts
from qualaudit.model import QualityModel, UntrainedModelWarning, default_model_path
from qualaudit.outputs import score_rows
from qualaudit.pipeline import score_to_file
from qualaudit.schema import OUTPUT_COLUMNS, Transcript, TranscriptScore

log = logging.getLogger("qualaudit.benchmarks.throughput")

NAIVE_BATCH = 32  # windows per batch in the naive loop, and sentence-transformers' default
FP32_TOLERANCE = 1e-4
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of the device name;
# the first match wins. `--peak-tflops` overrides.
GPU_BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
                        ("H200", 989.0), ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0),
                        ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0),
                        ("A10", 125.0))


# ------------------------------------------------------------------------------ workload
# A support-chat vocabulary: frequent function words first (Zipf weights follow the order),
# then the nouns and verbs of orders, payments, accounts and devices, then rarer words that
# WordPiece splits into several pieces.
VOCABULARY = """
the i to a you and it is my for of that this your on in have can be with we not me was
please what are do so but if will at there just has an or no any when now how as they one
get would been could about all out up still help sorry thanks thank order account card
payment refund charged twice email password reset link app phone number delivery package
tracking address store item items price discount code subscription plan cancel change
update check issue problem working error screen login sign access locked verify identity
message agent human manager support team ticket case week days today yesterday hours
minutes again same time new old back wrong missing damaged return exchange receipt invoice
bill billing fee charge amount money bank transfer pending approved declined confirm
confirmed sent received shipping shipped arrive arrived late waiting wait understand
frustrating apologize inconvenience happy glad great perfect okay ok yes sure right well
really very much more also need want like know see let look looking trying tried try
still anything something everything nothing someone anyone here because since after
before while until then than only even already never always soon quickly possible
unfortunately however actually basically please kindly appreciate escalate supervisor
complaint ridiculous unacceptable disappointed angry upset fixed solved resolved works
worked broken crashed restart reinstall settings browser laptop router network wifi
connection outage service plan upgrade downgrade contract renewal warranty replacement
technician appointment schedule reschedule callback voicemail chat transcript reference
firmware authentication reauthorize troubleshooting intermittently discrepancy
prorated reimbursement chargeback notification synchronization configuration
""".split()
SYNTHETIC_TURNS = {"median": 8.0, "sigma": 0.6, "max": 150}
SYNTHETIC_WORDS = {"customer": (12.0, 0.8), "agent": (26.0, 0.75)}  # lognormal median, sigma
PASTED_SHARE, PASTED_WORDS = 0.02, (200, 600)  # turns that paste a log or an email


def synthetic_records(seed: int = 0, transcripts: int | None = None,
                      turns: int | None = None) -> Iterator[dict[str, Any]]:
    """Transcripts in the JSONL shape, made up with a seed: `transcripts` of them, or as many
    as reach `turns` turns (the last one cut to fit).

    Turn counts are lognormal (median 8, 90th percentile about 17, up to 150); turn lengths
    lognormal in words (customer median 12, agent median 26, with about 1 turn in 100 over
    100 words), and 2% of turns paste 200-600 words (a log, an email), which the scorer cuts
    to `max_turn_tokens`. Customers open 85% of chats; a side speaks twice in a row 15% of
    the time. Words follow a Zipf law over a support-chat vocabulary, with order numbers.
    """
    if (transcripts is None) == (turns is None):
        raise ValueError("give exactly one of transcripts and turns")
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(VOCABULARY) + 1) ** 0.9
    weights /= weights.sum()
    done_turns = 0
    i = 0
    while (transcripts is None or i < transcripts) and (turns is None or done_turns < turns):
        n = int(min(max(1, round(rng.lognormal(math.log(SYNTHETIC_TURNS["median"]),
                                               SYNTHETIC_TURNS["sigma"]))), SYNTHETIC_TURNS["max"]))
        if turns is not None:
            n = min(n, turns - done_turns)
        role = "user" if rng.random() < 0.85 else "assistant"
        messages = []
        for _ in range(n):
            side = "customer" if role == "user" else "agent"
            if rng.random() < PASTED_SHARE:
                words = int(rng.integers(*PASTED_WORDS))
            else:
                median, sigma = SYNTHETIC_WORDS[side]
                words = int(min(max(1, round(rng.lognormal(math.log(median), sigma))), 400))
            messages.append({"role": role, "content": _sentences(rng, weights, words)})
            if rng.random() >= 0.15:
                role = "assistant" if role == "user" else "user"
        yield {"id": f"syn-{i:07d}", "agent_type": "ai" if rng.random() < 0.6 else "human",
               "messages": messages}
        done_turns += n
        i += 1


def _sentences(rng: np.random.Generator, weights: np.ndarray, words: int) -> str:
    picks = rng.choice(len(VOCABULARY), size=words, p=weights)
    tokens = [VOCABULARY[k] for k in picks]
    for k in np.flatnonzero(rng.random(words) < 0.01):  # order numbers, ticket ids
        tokens[k] = f"#{rng.integers(10_000, 10_000_000)}"
    out, start = [], 0
    while start < words:
        end = min(words, start + int(rng.integers(4, 17)))
        sentence = " ".join(tokens[start:end])
        out.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", ".", "?", "!"]))
        start = end
    return " ".join(out)


def public_transcripts(data_dir: str | Path, n: int) -> list[Transcript]:
    """`n` dev-split transcripts of STC-3 (English) and USS, alternating sources, cycled
    (with new ids) when `n` is larger than the split. The text is read in place, never copied."""
    from qualaudit.training.datasets import by_split, load_sources

    sources = load_sources(data_dir, ["stc3", "uss"])
    pools = [[e.transcript for e in by_split(sources[name], "dev")] for name in ("stc3", "uss")]
    mixed = [t for pair in zip(*pools) for t in pair]
    longest = max(pools, key=len)
    mixed += longest[min(len(p) for p in pools):]
    out = []
    for k in range(n):
        t = mixed[k % len(mixed)]
        lap = k // len(mixed)
        out.append(t if lap == 0 else replace(t, id=f"{t.id}#{lap}"))
    return out


def workload(kind: str, n: int, seed: int, data_dir: str | None) -> list[Transcript]:
    if kind == "synthetic":
        return list(read_transcripts(list(synthetic_records(seed, transcripts=n))))
    if kind == "public":
        if not data_dir:
            raise SystemExit("--workload public needs --data-dir (laid out like ../shared/data)")
        return public_transcripts(data_dir, n)
    raise SystemExit(f"unknown workload {kind!r}: synthetic or public")


# ------------------------------------------------------------------------------ models
def load_model(path: str | None, device: str) -> QualityModel:
    """The model to benchmark: a directory, the bundled default (when no path is given), or
    "tiny": a random 2-layer, 32-wide BERT with MiniLM's tokenizer (for pipeline overheads
    and memory flatness, where the encoder's own cost should vanish)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        if path == "tiny":
            model = tiny_model()
        else:
            path = path or default_model_path()
            if path is None:
                raise SystemExit("no models/default yet: pass --model DIR (`qualaudit init DIR` "
                                 "builds an untrained MiniLM model with the same architecture)")
            model = QualityModel.from_pretrained(path)
    return model.to(device).eval()


def tiny_model(seed: int = 0) -> QualityModel:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from qualaudit.model import default_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=512)
    with tempfile.TemporaryDirectory() as tmp:
        BertModel(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return QualityModel.from_encoder(tmp, conversation_dim=16)


def sentence_transformer_on(model: QualityModel, device: str, max_seq_length: int):
    """A SentenceTransformer (Transformer -> mean Pooling -> Normalize) whose transformer is
    the model's own encoder module: the same weights and attention implementation, and a
    tokenizer loaded from the same files."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    hidden = model.encoder.config.hidden_size
    with tempfile.TemporaryDirectory() as tmp:
        model.encoder.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        st = SentenceTransformer(modules=[Transformer(tmp, max_seq_length=max_seq_length),
                                          Pooling(hidden, "mean"), Normalize()], device=device)
    st[0].model = model.encoder
    return st.eval()


def windows_as_texts(windows: TurnWindows, tokenizer) -> list[tuple[str, str] | str]:
    """Each window as the text a sentence-transformers user would pass: (turn, context) for a
    pair, the turn alone for a transcript's first turn, decoded from the window's tokens so
    the turn and context are cut as the scorer cuts them."""
    texts: list[tuple[str, str] | str] = []
    for ids, types in zip(windows.input_ids, windows.token_type_ids):
        split = types.index(1) if 1 in types else len(ids)
        turn = tokenizer.decode(ids[:split], skip_special_tokens=True)
        context = tokenizer.decode(ids[split:], skip_special_tokens=True)
        texts.append((turn, context) if context else turn)
    return texts


# ------------------------------------------------------------------------------ methods
def naive_scores(auditor: Auditor, transcripts: list[Transcript],
                 batch_windows: int = NAIVE_BATCH) -> list[TranscriptScore]:
    """(a) The loop a user would write with the model's own parts, in fp32: windows of each
    transcript tokenized as it comes, encoded in batches of `batch_windows` windows in input
    order padded to the longest, then the model's forward pass (conversation heads over all
    transcripts at once) and `outputs.score_rows` for calibration, evidence and rows."""
    model, device = auditor.model, auditor.device
    pad_id = model.tokenizer.pad_token_id or 0
    transcripts = [within_max_turns(t, auditor.max_turns)[0] for t in transcripts]

    def encode_in_input_order(windows: TurnWindows) -> torch.Tensor:
        n = len(windows.input_ids)
        states, order = [], []
        for start in range(0, n, batch_windows):
            index = range(start, min(n, start + batch_windows))
            batch = collate(windows, index, pad_id, model.uses_token_types)
            turns, spans = windows.turns_in(index)
            states.append(model.encode_turns(**{k: v.to(device) for k, v in batch.items()},
                                             spans=spans))
            order += turns
        return torch.cat(states)[torch.argsort(torch.tensor(order, device=device))]

    with torch.inference_mode():
        windows = TurnWindows.concat([auditor.builder.build([t]) for t in transcripts])
        output = model(windows, with_evidence=True, encode=encode_in_input_order)
        return score_rows(output, transcripts, windows, model.specs, model.calibration,
                          auditor.info, auditor.top_evidence,
                          languages=model.config.languages)


def scorer_scores(auditor: Auditor, transcripts: list[Transcript]) -> list[TranscriptScore]:
    """(c) The scorer as a user runs it on validated transcripts."""
    return [r for chunk in auditor.score_in_chunks(transcripts) for r in chunk]


def naive_padding(lengths: list[int], batch: int = NAIVE_BATCH) -> int:
    """Padded tokens of batches of `batch` windows in input order."""
    return sum(len(lengths[s:s + batch]) * max(lengths[s:s + batch])
               for s in range(0, len(lengths), batch))


def sentence_transformer_tokens(st, texts: list, batch: int = NAIVE_BATCH) -> tuple[int, int]:
    """(real tokens, padded tokens) of sentence-transformers' batches: it sorts inputs by
    character length, longest first, and pads each batch of `batch` to its longest."""
    tokenizer = st[0].tokenizer
    limit = st[0].max_seq_length
    singles = [k for k, t in enumerate(texts) if isinstance(t, str)]
    pairs = [k for k, t in enumerate(texts) if not isinstance(t, str)]
    lengths = [0] * len(texts)
    for where, args in ((singles, ([texts[k] for k in singles],)),
                        (pairs, ([texts[k][0] for k in pairs], [texts[k][1] for k in pairs]))):
        if where:
            encoded = tokenizer(*args, truncation=True, max_length=limit)["input_ids"]
            for k, ids in zip(where, encoded):
                lengths[k] = len(ids)
    chars = [len(t) if isinstance(t, str) else sum(map(len, t)) for t in texts]
    order = np.argsort([-c for c in chars], kind="stable")
    sorted_lengths = [lengths[i] for i in order]
    return sum(lengths), naive_padding(sorted_lengths, batch)


# ------------------------------------------------------------------------------ measuring
def current_rss_mb() -> float | None:
    """Resident memory of this process now (Linux /proc), in MiB."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def max_rss_mb() -> float:
    """The process's peak resident memory so far (getrusage), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class PeakMemory:
    """Peak RSS while a block runs (sampled every `interval` seconds in a thread; falls back
    to the process peak where /proc is missing) and peak GPU memory allocated on CUDA."""

    device: str = "cpu"
    interval: float = 0.02
    rss_mb: float = 0.0
    gpu_mb: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._stop.clear()
        self.rss_mb = current_rss_mb() or 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss_mb = max(self.rss_mb, current_rss_mb() or 0.0)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        now = current_rss_mb()
        self.rss_mb = max(self.rss_mb, now) if now is not None else max_rss_mb()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.gpu_mb = torch.cuda.max_memory_allocated() / 2**20


@dataclass
class Timing:
    outputs: Any  # of the warm-up run
    seconds: list[float]
    rss_mb: float
    gpu_mb: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(run: Callable[[], Any], repeats: int, device: str) -> Timing:
    """One warm-up run (its outputs are returned), then `repeats` timed runs."""
    with PeakMemory(device) as memory:
        outputs = run()
        seconds = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            seconds.append(time.perf_counter() - start)
    return Timing(outputs, seconds, memory.rss_mb, memory.gpu_mb)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def encoder_flops(lengths: Iterable[int], encoder_config) -> float:
    """Forward FLOPs of the encoder on these windows: per token, layers x (24 h^2 + 4 s h)
    for hidden size h and the window's real length s (24 h^2 is 8 h^2 + 4 h i for the
    intermediate size i = 4h of BERT-style encoders; the general form is used)."""
    h = encoder_config.hidden_size
    i = getattr(encoder_config, "intermediate_size", 4 * h)
    layers = encoder_config.num_hidden_layers
    s = np.asarray(list(lengths), dtype=np.float64)
    return float(layers * (s * (8 * h * h + 4 * h * i) + 4 * h * s * s).sum())


def gpu_peak_tflops(device: str) -> tuple[str | None, float | None]:
    if not device.startswith("cuda"):
        return None, None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, tflops in GPU_BF16_PEAK_TFLOPS:
        if key in name:
            return name, tflops
    return name, None


# ------------------------------------------------------------------------------ comparing
# Every score of a row: the conversation scores, their distributions, and the turns.
SCORE_FIELDS = tuple(c.name for c in OUTPUT_COLUMNS
                     if c.kind == "float" or c.name.endswith("_dist")) + ("turns",)
CONVERSATION_DECISIONS = ("resolution", "satisfaction", "repeat_inquiry", "escalation")
TURN_DECISIONS = ("solution_given", "breakdown", "solution_confirmed")


def score_numbers(result: TranscriptScore) -> dict[str, float]:
    """Every score of a row (conversation and per turn) by its path; evidence, ids and
    turn indices left out."""
    row = result.to_dict(per_turn=True)
    out: dict[str, float] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in ("index",):
                    walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for k, item in enumerate(value):
                walk(item, f"{path}[{k}]")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[path] = float(value)

    for name in SCORE_FIELDS:
        walk(row[name], name)
    return out


def decisions(result: TranscriptScore) -> tuple[dict[str, Any], dict[str, Any]]:
    """(conversation decisions, turn decisions): each probability thresholded at 0.5, and the
    escalation turn."""
    conversation: dict[str, Any] = {k: getattr(result, k) >= 0.5 for k in CONVERSATION_DECISIONS}
    conversation["escalation_turn"] = result.escalation_turn
    turns: dict[str, Any] = {}
    for t in result.turns:
        for name in TURN_DECISIONS:
            value = getattr(t, name)
            if value is not None:
                turns[f"{t.index}.{name}"] = value >= 0.5
        for signal in ESCALATION_SIGNALS if t.escalation_signals else ():
            turns[f"{t.index}.{signal}"] = t.escalation_signals[signal] >= 0.5
    return conversation, turns


def compare(reference: list[TranscriptScore], candidate: list[TranscriptScore]) -> dict[str, Any]:
    """How far `candidate` is from `reference`: max and mean absolute difference over every
    score, the share of decisions at 0.5 that flip, and the largest difference in the
    evidence contributions of turns listed by both."""
    if [r.id for r in reference] != [c.id for c in candidate]:
        raise AssertionError("the two methods returned different transcripts or orders")
    diffs, flips, n_decisions, conv_flips, n_conv, evidence = [], 0, 0, 0, 0, 0.0
    for ref, cand in zip(reference, candidate):
        a, b = score_numbers(ref), score_numbers(cand)
        if a.keys() != b.keys():
            raise AssertionError(f"{ref.id}: the two methods returned different outputs "
                                 f"({sorted(a.keys() ^ b.keys())[:5]})")
        diffs.extend(abs(a[k] - b[k]) for k in a)
        (ca, ta), (cb, tb) = decisions(ref), decisions(cand)
        conv_flips += sum(ca[k] != cb[k] for k in ca)
        n_conv += len(ca)
        flips += sum(ca[k] != cb[k] for k in ca) + sum(ta[k] != tb[k] for k in ta)
        n_decisions += len(ca) + len(ta)
        for target, listed in ref.evidence.items():
            other = {e.index: e.contribution for e in cand.evidence.get(target, [])}
            evidence = max([evidence] + [abs(e.contribution - other[e.index])
                                         for e in listed if e.index in other])
    diffs_array = np.asarray(diffs)
    return {"max_abs_diff": float(diffs_array.max(initial=0.0)),
            "mean_abs_diff": float(diffs_array.mean()) if diffs else 0.0,
            "decision_flip_rate": flips / max(n_decisions, 1),
            "conversation_decision_flip_rate": conv_flips / max(n_conv, 1),
            "decisions": n_decisions, "outputs_compared": len(diffs),
            "evidence_max_abs_diff": evidence}


# ------------------------------------------------------------------------------ the benchmark
VARIANTS = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"},
            "int8": {"precision": "fp32", "quantize": "int8"}}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Steps: workload -> (c) each scorer variant -> (b) sentence-transformers -> (a) naive
    -> compare each variant with (a) -> pick the best variant -> one flat dict."""
    device = args.device
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device)
    transcripts = workload(args.workload, args.transcripts, args.seed, args.data_dir)
    reference = Auditor(model, device=device, max_turns=None, precision="fp32")  # its parts
    windows = reference.builder.build([within_max_turns(t, reference.max_turns)[0] for t in transcripts])
    lengths = windows.lengths
    tokens, turns = sum(lengths), windows.n_turns
    flops = encoder_flops(lengths, model.encoder.config)
    gpu_name, peak_tflops = gpu_peak_tflops(device)
    peak_tflops = args.peak_tflops or peak_tflops
    out: dict[str, Any] = {
        "device": device, "gpu_name": gpu_name, "cpu": _cpu_name(), "threads": args.threads,
        "torch": torch.__version__,
        "attn_implementation": model.encoder.config._attn_implementation,
        "model": args.model or str(default_model_path()),
        "model_trained": not model.config.untrained_heads,
        "workload": args.workload, "seed": args.seed, "repeats": args.repeats,
        "transcripts": len(transcripts), "turns": turns, "tokens": tokens,
        "mean_window_tokens": tokens / max(len(lengths), 1), "encoder_gflops": flops / 1e9,
        "peak_bf16_tflops": peak_tflops,
    }

    def rates(prefix: str, timing: Timing, real: int, padded: int) -> None:
        out[f"{prefix}_seconds"] = timing.median
        out[f"{prefix}_seconds_runs"] = ",".join(f"{s:.4f}" for s in timing.seconds)
        out[f"{prefix}_transcripts_per_s"] = len(transcripts) / timing.median
        out[f"{prefix}_turns_per_s"] = turns / timing.median
        out[f"{prefix}_tokens_per_s"] = real / timing.median
        out[f"{prefix}_padding_fraction"] = 1 - real / padded if padded else 0.0
        out[f"{prefix}_peak_rss_mb"] = timing.rss_mb
        if timing.gpu_mb is not None:
            out[f"{prefix}_peak_gpu_mb"] = timing.gpu_mb
        if device.startswith("cuda") and peak_tflops:
            out[f"{prefix}_mfu"] = flops / timing.median / (peak_tflops * 1e12)

    log.info("workload: %d transcripts, %d turns, %d tokens", len(transcripts), turns, tokens)
    # (c) first, so that its memory peak includes no leftovers of the other methods.
    scored = {}
    for name in args.variants:
        auditor = Auditor(model, device=device, max_turns=None, chunk_turns=args.chunk_turns,
                          max_batch_tokens=args.max_batch_tokens, max_padding=args.max_padding,
                          **VARIANTS[name])
        gc.collect()
        timing = timed(lambda a=auditor: scorer_scores(a, transcripts), args.repeats, device)
        runs = args.repeats + 1
        prefix = f"scorer_{name}"
        rates(prefix, timing, auditor.stats.tokens // runs, auditor.stats.padded_tokens // runs)
        out[f"{prefix}_max_batch_tokens"] = auditor.max_batch_tokens
        out[f"{prefix}_max_padding"] = auditor.max_padding
        out[f"{prefix}_chunk_turns"] = auditor.chunk_turns
        out[f"{prefix}_prefetch"] = auditor.prefetch
        log.info("scorer %s: %.2fs", name, timing.median)
        if args.encoder_only:
            encode_timing = timed(lambda a=auditor: _encode_only(a, windows), args.repeats, device)
            out[f"{prefix}_encoder_seconds"] = encode_timing.median
            out[f"{prefix}_encoder_tokens_per_s"] = tokens / encode_timing.median
            if device.startswith("cuda") and peak_tflops:
                out[f"{prefix}_encoder_mfu"] = flops / encode_timing.median / (peak_tflops * 1e12)
        scored[name] = timing
        del auditor

    if not args.no_sentence_transformers:
        st = sentence_transformer_on(model, device, max(lengths))
        texts = windows_as_texts(windows, model.tokenizer)
        st_real, st_padded = sentence_transformer_tokens(st, texts)
        gc.collect()
        st_timing = timed(lambda: st.encode(texts, batch_size=NAIVE_BATCH, show_progress_bar=False,
                                            convert_to_numpy=True), args.repeats, device)
        rates("st", st_timing, st_real, st_padded)
        out["st_tokens"] = st_real
        log.info("sentence-transformers: %.2fs", st_timing.median)
        del st

    gc.collect()
    naive = timed(lambda: naive_scores(reference, transcripts), args.repeats, device)
    rates("naive", naive, tokens, naive_padding(lengths))
    log.info("naive: %.2fs", naive.median)

    candidates = {}
    for name, timing in scored.items():
        prefix = f"scorer_{name}"
        same = compare(naive.outputs, timing.outputs)
        for key, value in same.items():
            out[f"{prefix}_{key}"] = value
        if name == "fp32":
            eligible = same["max_abs_diff"] <= FP32_TOLERANCE
            out["fp32_same_scores"] = eligible
        else:
            eligible = (not model.config.untrained_heads
                        and same["decision_flip_rate"] <= args.max_flip_rate)
        out[f"{prefix}_eligible"] = eligible
        candidates[name] = (timing.median, eligible)
        log.info("scorer %s against naive: max diff %.2e, decisions flipped %.4f", name,
                 same["max_abs_diff"], same["decision_flip_rate"])

    best = _pick(candidates, args.best)
    out["best_variant"] = best
    prefix = f"scorer_{best}"
    out["speedup_vs_naive"] = naive.median / out[f"{prefix}_seconds"]
    if not args.no_sentence_transformers:
        out["speedup_vs_sentence_transformers"] = out["st_seconds"] / out[f"{prefix}_seconds"]
    for key in ("max_abs_diff", "mean_abs_diff", "decision_flip_rate", "tokens_per_s",
                "transcripts_per_s", "turns_per_s", "padding_fraction", "peak_rss_mb",
                "peak_gpu_mb", "mfu", "encoder_mfu", "encoder_tokens_per_s"):
        if f"{prefix}_{key}" in out:
            out[key] = out[f"{prefix}_{key}"]
    out["process_peak_rss_mb"] = max_rss_mb()
    return out


def _encode_only(auditor: Auditor, windows: TurnWindows) -> torch.Tensor:
    """The encoder alone, as the scorer batches it (length-sorted token budgets)."""
    with torch.inference_mode():
        return auditor.model.encode_windows(windows, auditor.max_batch_tokens).cpu()


def _pick(candidates: dict[str, tuple[float, bool]], best: str) -> str:
    """The fastest variant whose answers pass (or the one asked for)."""
    if best != "auto":
        if best not in candidates:
            raise SystemExit(f"--best {best}: not among the variants run ({sorted(candidates)})")
        return best
    eligible = {k: s for k, (s, ok) in candidates.items() if ok}
    if not eligible:
        raise SystemExit("no variant gives the naive loop's answers (fp32 within 1e-4): a bug")
    return min(eligible, key=eligible.get)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------ scale
def write_corpus(path: Path, turns: int, seed: int) -> tuple[int, int]:
    """A JSONL corpus of exactly `turns` synthetic turns, written as it is made (flat memory);
    returns (transcripts, turns)."""
    n = total = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in synthetic_records(seed, turns=turns):
            handle.write(json.dumps(record) + "\n")
            n += 1
            total += len(record["messages"])
    return n, total


def ids_in_order(corpus: Path, output: Path) -> bool:
    """Whether the output's rows are the corpus's transcripts in the same order (streamed)."""
    with corpus.open(encoding="utf-8") as a, output.open(encoding="utf-8") as b:
        for line_a, line_b in zip(a, b):
            if json.loads(line_a)["id"] != json.loads(line_b)["id"]:
                return False
        return a.readline() == "" and b.readline() == ""


@dataclass
class ChunkSample:
    turns: int
    tokens: int
    seconds: float
    rss_mb: float | None


def scale_run(model: QualityModel, turns: int, *, device: str, seed: int = 0,
              workdir: str | Path | None = None, **auditor_kwargs: Any) -> dict[str, Any]:
    """Score a streamed corpus of `turns` turns to a file; memory and throughput per chunk.

    Returns turns, transcripts, tokens, seconds, tokens_per_s, turns_per_s, peak_rss_mb,
    rss_mb_at_10pct / rss_mb_at_100pct (RSS after the chunk that reached 10% / all of the
    turns), rss_growth_mb (their difference), tokens_per_s_first_10pct / _last_10pct (the
    chunks' throughput at the start and the end of the run), chunks, rss_mb_by_chunk and
    tokens_per_s_by_chunk (comma-separated, one value per chunk), order_matches_input.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        corpus, output = Path(tmp) / "corpus.jsonl", Path(tmp) / "scores.jsonl"
        n_transcripts, n_turns = write_corpus(corpus, turns, seed)
        auditor = Auditor(model, device=device, **auditor_kwargs)
        samples: list[ChunkSample] = []

        def progress(summary) -> None:
            samples.append(ChunkSample(summary.turns, summary.tokens, summary.seconds,
                                       current_rss_mb()))

        with PeakMemory(device) as memory:
            summary = score_to_file(corpus, output, auditor, on_progress=progress)
        in_order = ids_in_order(corpus, output)
    at = _sample_at(samples, 0.1 * n_turns)
    rates = [(b.tokens - a.tokens) / max(b.seconds - a.seconds, 1e-9)
             for a, b in zip([ChunkSample(0, 0, 0.0, None)] + samples, samples)]
    tenth = max(1, len(rates) // 10)
    out = {"turns": n_turns, "transcripts": n_transcripts, "tokens": summary.tokens,
           "seconds": summary.seconds, "tokens_per_s": summary.tokens / summary.seconds,
           "turns_per_s": n_turns / summary.seconds,
           "peak_rss_mb": max([memory.rss_mb] + [s.rss_mb for s in samples if s.rss_mb]),
           "rss_mb_at_10pct": at.rss_mb, "rss_mb_at_100pct": samples[-1].rss_mb,
           "tokens_per_s_first_10pct": statistics.median(rates[:tenth]),
           "tokens_per_s_last_10pct": statistics.median(rates[-tenth:]),
           "chunks": len(samples),
           "rss_mb_by_chunk": ",".join(f"{s.rss_mb:.0f}" for s in samples if s.rss_mb),
           "tokens_per_s_by_chunk": ",".join(f"{r:.0f}" for r in rates),
           "order_matches_input": in_order and summary.scored == n_transcripts}
    if at.rss_mb is not None and samples[-1].rss_mb is not None:
        out["rss_growth_mb"] = samples[-1].rss_mb - at.rss_mb
    if memory.gpu_mb is not None:
        out["peak_gpu_mb"] = memory.gpu_mb
    return out


def _sample_at(samples: list[ChunkSample], turns: float) -> ChunkSample:
    return next((s for s in samples if s.turns >= turns), samples[-1])


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    model = load_model(args.model, args.device)
    out: dict[str, Any] = {"mode": "scale", "device": args.device, "cpu": _cpu_name(),
                           "gpu_name": gpu_peak_tflops(args.device)[0], "threads": args.threads,
                           "torch": torch.__version__,
                           "model": args.model or str(default_model_path()),
                           "precision": args.precision, "quantize": args.quantize,
                           "chunk_turns": args.chunk_turns, "seed": args.seed,
                           "max_batch_tokens": args.max_batch_tokens,
                           "max_padding": args.max_padding}
    for n in args.turns:
        log.info("scale: %d turns", n)
        result = scale_run(model, n, device=args.device, seed=args.seed, workdir=args.workdir,
                           precision=args.precision, quantize=args.quantize,
                           chunk_turns=args.chunk_turns, max_batch_tokens=args.max_batch_tokens,
                           max_padding=args.max_padding)
        out.update({f"scale_{n}_{k}": v for k, v in result.items()})
    return out


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory, or 'tiny' (default: models/default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=["cpu", "cuda"])
    parser.add_argument("--transcripts", type=int, metavar="N",
                        help="transcripts in the workload (default 100 on CPU, 2000 on CUDA)")
    parser.add_argument("--workload", default="synthetic", choices=["synthetic", "public"])
    parser.add_argument("--data-dir", help="with --workload public: laid out like ../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads, the same for every method")
    parser.add_argument("--variants", type=lambda s: s.split(","),
                        help="scorer variants among fp32,bf16,int8 (default: all three on CPU, "
                             "fp32,bf16 on CUDA)")
    parser.add_argument("--best", default="auto", choices=["auto", *VARIANTS],
                        help="the variant the headline figures report (default: the fastest "
                             "whose answers pass)")
    parser.add_argument("--max-flip-rate", type=float, default=0.005,
                        help="a reduced precision passes with at most this share of flipped "
                             "decisions, on a trained model only (default 0.005)")
    parser.add_argument("--max-batch-tokens", type=int,
                        help="default: the Auditor's for the device")
    parser.add_argument("--chunk-turns", type=int, help="default 2048 on CPU, 16384 on CUDA")
    parser.add_argument("--max-padding", type=float, default=0.02,
                        help="the Auditor's max_padding (default 0.02)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="also time the encoder alone over prebuilt windows (default on CUDA)")
    parser.add_argument("--no-sentence-transformers", action="store_true",
                        help="skip (b); speedup_vs_sentence_transformers is then missing")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, for mfu")
    parser.add_argument("--scale", action="store_true", help="the streaming scale run instead")
    parser.add_argument("--turns", default="10000,100000",
                        type=lambda s: [int(x) for x in s.split(",")],
                        help="with --scale: corpus sizes in turns (default 10000,100000)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="with --scale")
    parser.add_argument("--quantize", choices=["int8"], help="with --scale")
    parser.add_argument("--workdir", help="with --scale: where the corpus and scores are "
                                          "written (default: the system's temp folder)")
    parser.add_argument("--json", metavar="PATH", help="also write the flat results dict here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    cuda = args.device == "cuda"
    args.transcripts = args.transcripts or (2000 if cuda else 100)
    args.variants = args.variants or (["fp32", "bf16"] if cuda else ["fp32", "bf16", "int8"])
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or (cuda and "int8" in args.variants):
        raise SystemExit(f"--variants: {unknown or ['int8']} not available here; choose among "
                         f"{'fp32,bf16' if cuda else 'fp32,bf16,int8'}")
    args.chunk_turns = args.chunk_turns or (16384 if cuda else 2048)
    args.encoder_only = args.encoder_only or cuda
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    result = run_scale(args) if args.scale else run_benchmark(args)
    result["command"] = "python benchmarks/throughput.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    results = main()
    print(json.dumps(results, indent=2))
    if results.get("fp32_same_scores") is False:
        print("throughput: the fp32 scorer's answers differ from the naive loop's by more than "
              f"{FP32_TOLERANCE}: that is a bug", file=sys.stderr)
        sys.exit(1)

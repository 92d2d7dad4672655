"""The throughput benchmark harness end to end on the tiny encoder, and the scorer's speed
paths it measures: padding-capped batches, int8 quantization, prefetching, the GPU code
paths run on the CPU. No timings are asserted: speed targets live in the benchmark."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import conversation, load_benchmark
from qualaudit.batching import collate, token_budget_batches
from qualaudit.cli import main as cli_main
from qualaudit.errors import InputError, QualauditError
from qualaudit.scorer import Auditor

throughput = load_benchmark("throughput")

HEADLINE_KEYS = ("speedup_vs_naive", "speedup_vs_sentence_transformers", "max_abs_diff",
                 "decision_flip_rate", "tokens_per_s", "transcripts_per_s", "padding_fraction",
                 "peak_rss_mb", "device")


def test_the_harness_runs_end_to_end_and_the_scorer_matches_the_naive_loop(tiny_model_dir,
                                                                           tmp_path):
    path = tmp_path / "throughput.json"
    result = throughput.main(["--model", str(tiny_model_dir), "--transcripts", "6",
                              "--repeats", "1", "--device", "cpu", "--variants", "fp32,int8",
                              "--json", str(path), "--quiet"])
    written = json.loads(path.read_text())
    for key in HEADLINE_KEYS:
        assert key in written, key
    assert written == json.loads(json.dumps(result))
    assert all(not isinstance(v, (dict, list)) for v in written.values())  # one flat dict
    assert written["device"] == "cpu" and "mfu" not in written
    assert written["best_variant"] == "fp32"  # an untrained model: reduced precision never wins
    assert written["fp32_same_scores"] is True
    assert written["scorer_fp32_max_abs_diff"] <= 1e-4
    assert written["scorer_fp32_decision_flip_rate"] == 0.0
    assert written["scorer_fp32_outputs_compared"] > 6 * 5
    assert written["scorer_int8_eligible"] is False
    assert written["transcripts"] == 6 and written["tokens"] > written["turns"] > 6
    # the scorer's length-sorted batches pad less than the naive loop's input-order batches
    assert 0 <= written["padding_fraction"] < written["naive_padding_fraction"] < 1
    assert written["st_tokens"] > 0 and written["peak_rss_mb"] > 0


def test_the_naive_loop_and_the_scorer_agree_on_every_output(tiny_model):
    transcripts = throughput.workload("synthetic", 12, seed=3, data_dir=None)
    auditor = Auditor(tiny_model, device="cpu", max_batch_tokens=300, chunk_turns=20)
    naive = throughput.naive_scores(auditor, transcripts)
    scored = throughput.scorer_scores(auditor, transcripts)
    same = throughput.compare(naive, scored)
    assert same["max_abs_diff"] <= 1e-4 and same["decision_flip_rate"] == 0.0
    assert same["evidence_max_abs_diff"] <= 1e-4
    assert same["decisions"] > len(transcripts) * 5


def test_compare_counts_flipped_decisions(tiny_model):
    transcripts = throughput.workload("synthetic", 3, seed=1, data_dir=None)
    results = throughput.scorer_scores(Auditor(tiny_model, device="cpu"), transcripts)
    flipped = [replace(r, resolution=1.0 - r.resolution) for r in results]
    same = throughput.compare(results, flipped)
    assert same["conversation_decision_flip_rate"] > 0
    assert same["max_abs_diff"] == pytest.approx(max(abs(1 - 2 * r.resolution) for r in results))
    with pytest.raises(AssertionError, match="different transcripts"):
        throughput.compare(results, results[::-1])


def test_synthetic_workload_is_seeded_and_spread_out():
    a = list(throughput.synthetic_records(seed=5, transcripts=300))
    assert a == list(throughput.synthetic_records(seed=5, transcripts=300))
    assert a != list(throughput.synthetic_records(seed=6, transcripts=300))
    turns = np.array([len(r["messages"]) for r in a])
    words = np.array([len(m["content"].split()) for r in a for m in r["messages"]])
    assert turns.min() <= 3 and turns.max() >= 20 and 6 <= np.median(turns) <= 10
    assert words.min() <= 3 and words.max() >= 200 and 10 <= np.median(words) <= 30
    by_turns = list(throughput.synthetic_records(seed=5, turns=1000))
    assert sum(len(r["messages"]) for r in by_turns) == 1000


def test_flops_follow_the_formula():
    class Config:
        hidden_size, intermediate_size, num_hidden_layers = 384, 1536, 6

    h = 384
    assert throughput.encoder_flops([10, 20], Config) == pytest.approx(
        6 * sum(s * (24 * h * h + 4 * s * h) for s in (10, 20)))


# ------------------------------------------------------------------------------ batching
def test_padding_capped_batches_cover_each_window_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in np.clip(rng.lognormal(4, 0.7, 2000), 3, 195)]
    plain = token_budget_batches(lengths, 8192)
    capped = token_budget_batches(lengths, 8192, max_padding=0.02, min_batch_tokens=1024)
    for batches in (plain, capped):
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 8192 for b in batches)

    def padding(batches):
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths) / padded

    assert padding(capped) < padding(plain) / 2 and padding(capped) < 0.05
    for b in capped[:-1]:  # a batch holding the minimum stays within the cap
        longest = max(lengths[i] for i in b)
        if (len(b) - 1) * longest >= 1024:
            assert 1 - sum(lengths[i] for i in b) / (len(b) * longest) <= 0.02 + 1e-9


def test_collate_builds_the_same_tensors_as_one_window_at_a_time(tiny_model):
    auditor = Auditor(tiny_model, device="cpu")
    windows = auditor.builder.build(throughput.workload("synthetic", 4, seed=2, data_dir=None))
    idx = [3, 0, 7, 5]
    batch = collate(windows, idx, 0, True)
    width = batch["input_ids"].shape[1]
    assert width == max(len(windows.input_ids[i]) for i in idx)
    for row, i in enumerate(idx):
        n = len(windows.input_ids[i])
        assert batch["input_ids"][row, :n].tolist() == windows.input_ids[i]
        assert batch["token_type_ids"][row, :n].tolist() == windows.token_type_ids[i]
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][row, n:] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_collate_can_pin_its_tensors(tiny_model):
    windows = Auditor(tiny_model, device="cpu").builder.build(
        throughput.workload("synthetic", 2, seed=2, data_dir=None))
    batch = collate(windows, [0, 1], 0, True, pin_memory=True)
    assert all(v.is_pinned() for v in batch.values())


def test_stats_count_padded_tokens(tiny_model):
    auditor = Auditor(tiny_model, device="cpu")
    throughput.scorer_scores(auditor, throughput.workload("synthetic", 20, seed=0, data_dir=None))
    assert auditor.stats.padded_tokens >= auditor.stats.tokens > 0
    assert 1 - auditor.stats.tokens / auditor.stats.padded_tokens < 0.1


# ------------------------------------------------------------------------------ int8
def test_int8_stays_close_to_fp32_and_leaves_the_model_alone(tiny_model, toy_transcripts):
    before = tiny_model.weights_sha256
    rng = torch.random.get_rng_state()
    fp32 = Auditor(tiny_model, device="cpu", precision="fp32").score(toy_transcripts)
    int8 = Auditor(tiny_model, device="cpu", quantize="int8")
    assert torch.equal(torch.random.get_rng_state(), rng)  # draws nothing from the caller's
    assert tiny_model.weights_sha256 == before
    assert not any(type(m) is torch.nn.Linear for m in int8.model.encoder.modules())
    assert any("quantized" in type(m).__module__ for m in int8.model.encoder.modules())
    assert not any("quantized" in type(m).__module__ for m in tiny_model.encoder.modules())
    # rows name the same model, and say that it ran int8
    assert int8.info.precision == "int8"
    assert replace(int8.info, precision="fp32") == Auditor(tiny_model, device="cpu",
                                                           precision="fp32").info
    same = throughput.compare(fp32, int8.score(toy_transcripts))
    assert 0 < same["max_abs_diff"] <= 0.05


def test_int8_is_refused_with_bf16_and_on_cuda(tiny_model, monkeypatch):
    with pytest.raises(ValueError, match="precision='fp32'"):
        Auditor(tiny_model, device="cpu", quantize="int8", precision="bf16")
    with pytest.raises(ValueError, match="quantize"):
        Auditor(tiny_model, device="cpu", quantize="int4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(QualauditError, match="CPU only"):
        Auditor(tiny_model, device="cuda", quantize="int8")


def test_cli_quantize_option(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(conversation("a", ("user", "my card was charged twice"),
                                              ("assistant", "sorry, refund sent"))) + "\n")
    out = tmp_path / "out.jsonl"
    assert cli_main(["score", str(source), "-o", str(out), "--model", str(tiny_model_dir),
                     "--device", "cpu", "--quantize", "int8", "--quiet"]) == 0
    assert json.loads(out.read_text())["id"] == "a"
    assert cli_main(["score", str(source), "--model", str(tiny_model_dir), "--device", "cpu",
                     "--quantize", "int8", "--precision", "bf16"]) == 2
    assert "--precision fp32" in capsys.readouterr().err
    assert cli_main(["score", str(source), "--model", str(tiny_model_dir), "--device", "cuda",
                     "--quantize", "int8"]) == 2
    assert "CPU only" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto would pick CUDA
    assert cli_main(["score", str(source), "--model", str(tiny_model_dir),
                     "--quantize", "int8"]) == 2
    assert "--device cpu" in capsys.readouterr().err


# ------------------------------------------------------------------------------ prefetch
def test_prefetching_gives_the_same_results_in_the_same_order(tiny_model):
    transcripts = throughput.workload("synthetic", 30, seed=4, data_dir=None)
    plain = Auditor(tiny_model, device="cpu", chunk_turns=25)
    ahead = Auditor(tiny_model, device="cpu", chunk_turns=25, prefetch=True)
    assert plain.prefetch is False and ahead.prefetch is True
    chunks = list(ahead.score_in_chunks(transcripts))
    assert len(chunks) > 3
    results = [r for chunk in chunks for r in chunk]
    assert [r.id for r in results] == [t.id for t in transcripts]
    same = throughput.compare(throughput.scorer_scores(plain, transcripts), results)
    assert same["max_abs_diff"] == 0.0


def test_an_error_while_prefetching_comes_after_the_chunks_before_it(tiny_model):
    transcripts = throughput.workload("synthetic", 12, seed=4, data_dir=None)

    def source():
        yield from transcripts[:8]
        raise InputError("broken line", transcript_id="bad")

    auditor = Auditor(tiny_model, device="cpu", chunk_turns=10, prefetch=True)
    seen = []
    with pytest.raises(InputError, match="broken line"):
        for chunk in auditor.score_in_chunks(source()):
            seen += [r.id for r in chunk]
    assert seen and seen == [t.id for t in transcripts[:len(seen)]]


def test_stopping_early_stops_the_prefetching_thread(tiny_model):
    transcripts = throughput.workload("synthetic", 40, seed=4, data_dir=None)
    closed = threading.Event()

    def source():
        try:
            yield from transcripts
        finally:
            closed.set()

    auditor = Auditor(tiny_model, device="cpu", chunk_turns=10, prefetch=True)
    chunks = auditor.score_in_chunks(source())
    next(chunks)
    chunks.close()
    assert not any(t.name == "qualaudit-prefetch" for t in threading.enumerate())
    assert closed.wait(5)


# ------------------------------------------------------------------------------ out of memory
def test_after_running_out_of_memory_the_rest_of_the_chunk_is_planned_smaller(tiny_model,
                                                                               monkeypatch):
    transcripts = throughput.workload("synthetic", 30, seed=6, data_dir=None)
    expected = throughput.scorer_scores(Auditor(tiny_model, device="cpu"), transcripts)
    auditor = Auditor(tiny_model, device="cpu", max_batch_tokens=8192, chunk_turns=10_000)
    encode = auditor.model.encode_turns
    sizes = []

    def encode_turns(input_ids, **kwargs):  # fails like CUDA on more than 8 windows
        sizes.append(len(input_ids))
        if len(input_ids) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return encode(input_ids, **kwargs)

    monkeypatch.setattr(auditor.model, "encode_turns", encode_turns)
    results = throughput.scorer_scores(auditor, transcripts)
    assert throughput.compare(expected, results)["max_abs_diff"] <= 1e-4
    failed = sum(size > 8 for size in sizes)
    assert failed == auditor.stats.oom_splits
    # each failure halves the budget for every batch not tried yet: a handful of failures,
    # not one or more for each of the batches planned at the start
    assert failed <= 6 and len(sizes) - failed > 20

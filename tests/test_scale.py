"""Streaming at scale, small and fast: over a corpus read from a file, the memory held stays
flat (Python heap traced, and resident memory) and the rows come out in input order. The
full runs (10k to 1M turns) are benchmarks/throughput.py --scale."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from conftest import load_benchmark
from qualaudit.pipeline import score_to_file
from qualaudit.scorer import Auditor

throughput = load_benchmark("throughput")


def test_memory_stays_flat_while_streaming_and_rows_keep_input_order(tiny_model, tmp_path):
    corpus, output = tmp_path / "corpus.jsonl", tmp_path / "scores.jsonl"
    n_transcripts, n_turns = throughput.write_corpus(corpus, 1000, seed=0)
    assert n_turns == 1000
    auditor = Auditor(tiny_model, device="cpu", chunk_turns=50, precision="fp32")
    samples = []  # (turns scored, Python heap held, resident memory) after each chunk

    def progress(summary) -> None:
        gc.collect()
        samples.append((summary.turns, tracemalloc.get_traced_memory()[0],
                        throughput.current_rss_mb()))

    tracemalloc.start()
    try:
        summary = score_to_file(corpus, output, auditor, on_progress=progress, per_turn=True)
    finally:
        tracemalloc.stop()
    assert summary.scored == n_transcripts and len(samples) >= 15
    ids = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    assert ids == [json.loads(line)["id"] for line in corpus.read_text().splitlines()]
    # Once the first chunks are in, what is held stops growing: scoring the remaining three
    # quarters adds no more than the ids seen (kept to refuse duplicates) and allocator noise;
    # holding the rows, at about 1 kB per turn with --per-turn, would add 750 kB or more.
    quarter = next(s for s in samples if s[0] >= n_turns / 4)
    assert samples[-1][1] - quarter[1] < 200_000
    if quarter[2] is not None:
        assert samples[-1][2] - quarter[2] < 25  # MiB


def test_scale_run_reports_memory_and_throughput_per_chunk(tiny_model, tmp_path):
    result = throughput.scale_run(tiny_model, 400, device="cpu", chunk_turns=40, precision="fp32",
                                  workdir=tmp_path)
    assert result["turns"] == 400 and result["order_matches_input"] is True
    assert result["chunks"] >= 9 and result["tokens"] > 400
    assert result["peak_rss_mb"] >= result["rss_mb_at_100pct"] > 0
    assert result["tokens_per_s_first_10pct"] > 0 and result["tokens_per_s_last_10pct"] > 0
    assert abs(result["rss_growth_mb"]) < 25
    assert len(result["rss_mb_by_chunk"].split(",")) == result["chunks"]
    assert len(result["tokens_per_s_by_chunk"].split(",")) == result["chunks"]
    assert list(tmp_path.iterdir()) == []  # the corpus and its scores are cleaned up


def test_freed_heap_pages_go_back_to_the_system():
    """What keeps a long CPU run bounded: holes freed between small live blocks (as varying
    batch shapes leave them) are returned when the scorer asks, after each chunk. In a fresh
    interpreter, whose heap no earlier test has shaped."""
    if throughput.current_rss_mb() is None:
        pytest.skip("resident memory is read from /proc")
    code = textwrap.dedent("""
        import gc, json, sys
        sys.path.insert(0, "benchmarks")
        from throughput import current_rss_mb
        from qualaudit.scorer import release_freed_memory
        released = release_freed_memory()  # start from a trimmed heap
        big, small = [], []
        for _ in range(1500):  # 100 kB buffers (heap, not mmap) pinned apart by 1 kB blocks
            big.append(bytearray(100_000))
            small.append(bytearray(1000))  # over 512 bytes: malloc, not pymalloc
        del big
        gc.collect()
        before = current_rss_mb()
        release_freed_memory()
        print(json.dumps({"released": released, "returned_mb": before - current_rss_mb()}))
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[1])
    result = json.loads(done.stdout.splitlines()[-1])
    if not result["released"]:
        pytest.skip("no glibc malloc_trim here: nothing to return the holes with")
    assert result["returned_mb"] > 60  # of about 143 MiB freed


def test_onednn_cache_is_bounded_when_a_cpu_scorer_starts_not_at_import(tiny_model, monkeypatch):
    """oneDNN's cache of per-shape primitives is what grew a long CPU run's memory: a CPU
    Auditor bounds it to 256 shapes, and leaves a value set before it alone; importing
    qualaudit sets nothing."""
    code = ("import os, qualaudit, qualaudit.scorer; "
            "print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'))")
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    assert done.stdout.strip() == "None"
    for preset, expected in ((None, "256"), ("64", "64")):
        monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
        if preset is not None:
            monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", preset)
        Auditor(tiny_model, device="cpu", precision="fp32")
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == expected

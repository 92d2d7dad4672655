"""benchmarks/report_scale.py on a small input: it runs the real command in a child process
and reports time, peak memory and output sizes (the figures themselves are in
benchmarks/README.md, never asserted here)."""

from __future__ import annotations

from conftest import load_benchmark


def test_scale_benchmark_measures_a_real_run(tmp_path):
    result = load_benchmark("report_scale").run(600, 8, tmp_path, n_boot=100)
    assert result["rows"] == 600 and result["input_bytes"] > 0
    assert result["report_seconds"] > 0 and result["peak_rss_mb"] > 10
    assert set(result["output_bytes"]) == {"json", "md", "html"}
    assert {"read", "cohorts", "rows_for_queues", "total"} <= set(result["stage_seconds"])

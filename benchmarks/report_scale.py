"""How `qualaudit report` scales: time and peak memory on a large score file, and the size of
the HTML report.

Writes a SYNTHETIC score file (`qualaudit.report.synthetic`: N conversations over W weeks,
schema 1.1 rows with evidence and metadata, 5% of them with per-turn outputs) unless it is
there already, then runs the report command in a child process exactly as a user would
(`qualaudit report FILE --by agent_type,channel,team --strata intent --over week --json
--markdown --html`) and measures that process: wall time, and peak resident memory
(the child's maximum RSS from getrusage, as `/usr/bin/time -v` reports it).

    python benchmarks/report_scale.py --rows 1000000 --weeks 52 --dir /tmp/report-bench

Prints one JSON object: rows, weeks, input bytes, seconds to generate, seconds and peak MB
of the report, the report's own stage timings, and the sizes of its outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from qualaudit.report.synthetic import SyntheticSpec, synthetic_rows, write_jsonl


def run(rows: int, weeks: int, directory: Path, n_boot: int = 1000) -> dict:
    """Generates the input if needed, runs the report in a child process, measures it."""
    directory.mkdir(parents=True, exist_ok=True)
    scores = directory / f"scores_{rows}_{weeks}w.jsonl"
    generated = None
    if not scores.exists():
        start = time.perf_counter()
        spec = SyntheticSpec(n=rows, weeks=weeks, decline_week=max(1, weeks - 8),
                             model_change_week=weeks // 2, per_turn_share=0.05)
        write_jsonl(synthetic_rows(spec), scores.with_suffix(".partial"))
        scores.with_suffix(".partial").rename(scores)
        generated = time.perf_counter() - start
    outputs = {kind: directory / f"report_{rows}.{kind}" for kind in ("json", "md", "html")}
    command = [sys.executable, "-m", "qualaudit", "report", str(scores),
               "--by", "agent_type,channel,team", "--strata", "intent", "--over", "week",
               "--n-boot", str(n_boot), "--json", str(outputs["json"]),
               "--markdown", str(outputs["md"]), "--html", str(outputs["html"])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    if done.returncode != 0:
        raise SystemExit(f"the report failed ({done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(outputs["json"].read_text(encoding="utf-8"))
    return {
        "rows": rows, "weeks": weeks, "input_bytes": scores.stat().st_size,
        "generate_seconds": None if generated is None else round(generated, 1),
        "report_seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        "stage_seconds": report["provenance"]["seconds"],
        "output_bytes": {kind: path.stat().st_size for kind, path in outputs.items()},
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/qualaudit-report-bench"))
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.weeks, args.dir, args.n_boot), indent=1))


if __name__ == "__main__":
    main()

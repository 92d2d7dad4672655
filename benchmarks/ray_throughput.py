"""The same corpus scored by the single-process pipeline (`qualaudit score`) and by a Ray Data
job on this machine (`qualaudit score --engine ray`): tokens/s of each end to end (read,
score, write), Ray's start-up cost, and the largest score difference between them.

    python benchmarks/ray_throughput.py --workload public --data-dir ../shared/data \\
        --transcripts 444 --actors 1

The corpus is written as JSONL to a temporary folder (deleted at the end) and read back by
both engines. On one machine Ray cannot beat the single process: its actors share the same
cores, each actor holds its own model, and the read/group/write stages take a CPU of their
own. What this measures is the price of the engine, so that the per-GPU figures of
`throughput.py` can be multiplied by the number of GPU actors of a cluster.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import workload  # noqa: E402

from qualaudit.io import read_scores  # noqa: E402
from qualaudit.pipeline import score_to_file  # noqa: E402
from qualaudit.schema import Transcript  # noqa: E402
from qualaudit.scorer import Auditor  # noqa: E402


def transcript_object(t: Transcript) -> dict[str, Any]:
    return {"id": t.id, "agent_type": t.agent_type, "metadata": dict(t.metadata),
            "turns": [{"role": u.role, "text": u.text, "timestamp": u.timestamp,
                       "agent_type": u.agent_type} for u in t.turns]}


def largest_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between the numbers of two rows (evidence compared turn
    by turn: equal contributions may come in either order)."""
    if isinstance(a, dict):
        return max((largest_difference(a[k], b.get(k)) for k in a if k != "evidence"), default=0.0)
    if isinstance(a, list):
        return max((largest_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b)
    return 0.0 if a == b else math.inf


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from qualaudit.integrations.ray import score_files

    transcripts = workload(args.workload, args.transcripts, args.seed, args.data_dir)
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(transcript_object(t)) + "\n" for t in transcripts))
        options = {"precision": args.precision}
        auditor = Auditor.from_pretrained(args.model, device="cpu", **options)
        start = time.perf_counter()
        local = score_to_file(corpus, Path(folder) / "local.jsonl", auditor)
        local_seconds = time.perf_counter() - start
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # what one Ray actor of one CPU gets (Ray sets OMP_NUM_THREADS)
        start = time.perf_counter()
        score_to_file(corpus, Path(folder) / "local-1.jsonl", auditor)
        one_thread_seconds = time.perf_counter() - start
        torch.set_num_threads(threads)

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        startup = time.perf_counter() - start
        ray.data.DataContext.get_current().enable_progress_bars = False
        runs = []
        for k in range(args.repeats):
            out = Path(folder) / f"ray-{k}"
            start = time.perf_counter()
            summary = score_files(corpus, out, args.model, actors=args.actors,
                                  batch_size=args.batch_size, **options)
            runs.append(time.perf_counter() - start)
        ray.shutdown()
        want = {r["id"]: r for r in read_scores(Path(folder) / "local.jsonl")}
        got = {r["id"]: r for p in sorted(out.glob("part-*")) for r in read_scores(p)}
        assert got.keys() == want.keys() and summary.scored == local.scored
        difference = max(largest_difference(want[i], got[i]) for i in want)
    ray_seconds = sorted(runs)[len(runs) // 2]
    return {
        "transcripts": local.scored, "tokens": local.tokens, "precision": auditor.info.precision,
        "cpus": args.cpus, "actors": args.actors, "batch_size": args.batch_size,
        "single_process": {"threads": threads, "seconds": round(local_seconds, 2),
                           "tokens_per_s": round(local.tokens / local_seconds)},
        "single_process_one_thread": {"seconds": round(one_thread_seconds, 2),
                                      "tokens_per_s": round(local.tokens / one_thread_seconds)},
        "ray": {"startup_seconds": round(startup, 2), "job_seconds_median": round(ray_seconds, 2),
                "job_seconds": [round(s, 2) for s in runs],
                "tokens_per_s": round(local.tokens / ray_seconds)},
        "ray_vs_single_process": round(local_seconds / ray_seconds, 3),
        "ray_vs_single_process_one_thread": round(one_thread_seconds / ray_seconds, 3),
        "max_abs_difference": difference,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    parser.add_argument("--workload", default="synthetic", choices=["synthetic", "public"])
    parser.add_argument("--data-dir", help="with --workload public: laid out like ../shared/data")
    parser.add_argument("--transcripts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="Ray jobs timed (median)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result["max_abs_difference"] <= 1e-4 or args.precision != "fp32" else 1


if __name__ == "__main__":
    sys.exit(main())

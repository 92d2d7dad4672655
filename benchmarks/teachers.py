"""Single-task references as teachers: each trained exactly as the protocol's reference
(`quality.TRAINING`, `quality.ST_RECIPE`: same training set, recipe and seed) and scored on
its own training conversations, for `TrainingArgs.teacher_labels` (distillation into the
multi-task model, after Clark et al. 2019, "BAM! Born-Again Multi-Task Networks").

The reference transfers better than the model on escalation and repeat inquiry
(benchmarks/README.md, "Round 14"); its probabilities carry what it learned from the same
labels. Each teacher also scores the protocol's items of its target, and the largest
difference from the cached reference (`local/single_task`) is written beside its labels:
near 0 means the teacher is the reference the model is compared with. When the cache does
not hold the reference yet, the teacher's scores on those items are cached as it, so one
training run serves both (a teacher reproduces the reference to about 2e-7).

Usage:
    python benchmarks/teachers.py resolution escalation -o local/teachers/a.json [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qualaudit.model import default_encoder_path
from qualaudit.training.datasets import load_sources

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402  (benchmarks/ is not a package)
import quality  # noqa: E402

log = logging.getLogger("qualaudit.benchmarks")


# the main targets that are conversation labels of the model (empathy is graded per turn)
TARGETS = ("resolution", "escalation", "repeat_inquiry")


def teacher_labels(target: str, loaded: dict, encoder: str, cache_dir: Path = quality.ST_CACHE) -> dict:
    """{"labels": {item key: class probabilities}, "n_train", "seconds",
    "max_diff_from_reference"} for one main target; the difference is None when the
    reference was not in `cache_dir` (the teacher's scores are cached as it then)."""
    spec = quality.TRAINING[target]
    rows = [e for e, _ in quality.training_rows(target, loaded)]
    train_texts, train_targets, _ = quality.training_set(target, loaded)
    path, key, items = quality.single_task_cache(target, loaded, encoder, cache_dir,
                                                  train_texts, train_targets)
    eval_texts = [quality.unit_text(e.transcript, None) for _, e in items]
    started = time.perf_counter()
    probs = baselines.fine_tune_single_task(train_texts, train_targets, train_texts + eval_texts,
                                            encoder, **quality.ST_RECIPE)
    seconds = time.perf_counter() - started
    own, protocol = probs[:len(train_texts)], probs[len(train_texts):]
    if path.is_file():
        reference = json.loads(path.read_text(encoding="utf-8"))["scores"]
        diff = float(np.abs(spec.score(protocol) - np.array([reference[k] for k, _ in items])).max())
    else:
        quality.write_single_task(path, key, target, [k for k, _ in items], protocol,
                                  len(train_texts), seconds)
        diff = None
    log.info("teacher %s: %d conversations, max |diff| from the cached reference %s",
             target, len(rows), diff)
    return {"labels": {e.key: p.round(6).tolist() for e, p in zip(rows, own)},
            "n_train": len(rows), "seconds": seconds,
            "max_diff_from_reference": diff, "recipe": quality.ST_RECIPE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", choices=TARGETS)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", default=None, help="default: the packaged MiniLM")
    parser.add_argument("--cache-dir", default=str(quality.ST_CACHE),
                        help="the protocol's single-task cache, to compare with or fill")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    loaded = load_sources(args.data_dir)
    encoder = args.encoder or default_encoder_path()
    out = {t: teacher_labels(t, loaded, encoder, Path(args.cache_dir)) for t in args.targets}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scoring actors that misbehave on purpose, for tests/test_ray.py. A module of its own (not
the test module) so that Ray workers import it by name: tests/ is on their path."""

from __future__ import annotations

import os
from pathlib import Path

from qualaudit.integrations.ray import ScoreBatches


class DiesOnce(ScoreBatches):
    """Kills its worker process on its first batch (`marker` records that it happened)."""

    def __init__(self, model, *, marker: str, **options):
        super().__init__(model, **options)
        self.marker = Path(marker)

    def __call__(self, batch):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


class FailsOn(ScoreBatches):
    """Its scorer raises (as a bug of ours would) on every chunk holding transcript `bad_id`."""

    def __init__(self, model, *, bad_id: str, **options):
        super().__init__(model, **options)
        score_in_chunks = self.auditor.score_in_chunks

        def failing(transcripts):
            transcripts = list(transcripts)
            if any(t.id == bad_id for t in transcripts):
                raise RuntimeError("planted failure")
            return score_in_chunks(transcripts)

        self.auditor.score_in_chunks = failing

"""Scoring on Ray Data: the same rows as `qualaudit score`, on as many machines as a Ray
cluster has, every input id exactly once.

    read_transcripts(paths) -> Dataset     files read by `qualaudit.io`, one task per file
    score_dataset(ds, model) -> Dataset    output rows: the score contract plus status/error
    score_files(input, output_dir, ...)    the job behind `qualaudit score --engine ray`

The stages: read (errors keep their file and line) -> group by id across the whole dataset
(the first by (file, line) wins, later ones are duplicate-id errors) -> score in an actor
pool (`ActorPoolStrategy`, one `Auditor` per actor, built from a model path every node can
read) -> write. Ray does not keep row order: output rows come in no particular order (sort
by `id` when order matters). Needs `pip install "qualaudit[ray]"`; ray is imported only
when these functions run.
"""

from .actor import ScoreBatches, output_schema
from .dataset import read_transcripts, score_dataset
from .engine import connect, require_ray
from .files import RaySummary, score_files

__all__ = ["RaySummary", "ScoreBatches", "connect", "output_schema", "read_transcripts",
           "require_ray", "score_dataset", "score_files"]

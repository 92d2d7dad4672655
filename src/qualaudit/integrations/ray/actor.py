"""The scoring actor: one `Auditor` per Ray actor, built from a model path on the worker (never
a pickled model), turning record rows into output rows."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Sequence
from typing import Any

from ..._version import __version__
from ...errors import InputError, QualauditError
from ...io.writers import error_record, flat_row
from ...language import language_rejection
from ...redact import redact_row
from ...schema import OUTPUT_COLUMNS, row_columns

log = logging.getLogger("qualaudit.ray")

_ARROW_KINDS = {"float": "float64", "int": "int64"}  # "string" and "json" (as JSON text): string


def output_schema(per_turn: bool) -> Any:
    """The columns of a scored dataset: the row contract of `qualaudit score` as a flat table
    (nested fields as JSON text, like its CSV and Parquet files), then `status` and `error`."""
    import pyarrow as pa

    kinds = {c.name: _ARROW_KINDS.get(c.kind, "string") for c in OUTPUT_COLUMNS}
    fields = [(name, pa.type_for_alias(kinds[name])) for name in row_columns(per_turn)]
    return pa.schema(fields + [("status", pa.string()), ("error", pa.string())])


class ScoreBatches:
    """`map_batches` callable: scores the "ok" record rows of a batch, passes "rejected" and
    "resumed" ones through. A transcript whose scoring raises (a bug of ours, not bad input:
    that was caught by the reader) becomes an error record; the rest of the batch is scored."""

    def __init__(self, model: str | None, *, driver_version: str, per_turn: bool = False,
                 redact: bool = False, languages: Sequence[str] | None = None,
                 **auditor_options: Any) -> None:
        if driver_version != __version__:
            raise QualauditError(
                f"this Ray worker has qualaudit {__version__}, the driver {driver_version}: "
                "install the same version on every node")
        from ...scorer import Auditor

        self.auditor = Auditor.from_pretrained(model, **auditor_options)
        self.per_turn, self.redact, self.languages = per_turn, redact, languages
        self.schema = output_schema(per_turn)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        out = [{"id": r["id"], "status": r["status"], "error": r["error"]} for r in rows]
        todo = []
        for i, r in enumerate(rows):
            if r["status"] == "ok":
                transcript = pickle.loads(r["transcript"])
                error = language_rejection(transcript, self.languages) if self.languages else None
                if error is None:
                    todo.append((i, transcript))
                else:
                    out[i] = {"id": transcript.id, "status": "rejected",
                              "error": json.dumps(error_record(error), ensure_ascii=False)}
        scored = self._score([t for _, t in todo])
        for (i, transcript), result in zip(todo, scored):
            if isinstance(result, InputError):
                out[i] = {"id": transcript.id, "status": "rejected",
                          "error": json.dumps(error_record(result), ensure_ascii=False)}
            else:
                row = result.to_dict(per_turn=self.per_turn)
                out[i] = {**flat_row(redact_row(row) if self.redact else row),
                          "status": "scored", "error": None}
        return pa.Table.from_pylist(out, schema=self.schema)

    def _score(self, transcripts: list[Any]) -> list[Any]:
        """Results in order; when the batch fails, each transcript alone, so that one failure
        costs one error record."""
        try:
            return [r for chunk in self.auditor.score_in_chunks(transcripts) for r in chunk]
        except Exception:  # noqa: BLE001 - any bug of ours: find the transcript it is in
            if len(transcripts) == 1:
                raise
        results: list[Any] = []
        for transcript in transcripts:
            try:
                results.extend(self._score([transcript]))
            except Exception as exc:  # noqa: BLE001
                log.exception("scoring failed for %s line %s", transcript.source, transcript.line)
                results.append(InputError(
                    f"scoring failed ({type(exc).__name__}: {exc}); this is a bug in qualaudit: "
                    "please report it", source=transcript.source, line=transcript.line,
                    transcript_id=transcript.id))
        return results

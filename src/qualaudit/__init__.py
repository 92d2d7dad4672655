"""qualaudit: quality audits of customer-support conversations, AI and human agents alike.

    >>> from qualaudit import Auditor
    >>> auditor = Auditor.from_pretrained("path/to/model")
    >>> auditor.score({"id": "t1", "messages": [{"role": "user", "content": "Hi"}]}).resolution

The names below are re-exported lazily (PEP 562): `import qualaudit` loads neither torch nor
transformers; the first use of `qualaudit.Auditor` (say) imports what it needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Auditor": "scorer",
    "AffineScaler": "calibration", "Calibration": "calibration",
    "IsotonicCalibrator": "calibration", "TemperatureScaler": "calibration",
    "InputError": "errors", "ModelLoadError": "errors", "NotFittedError": "errors",
    "QualauditError": "errors",
    "ColumnMap": "io", "iter_records": "io", "read_transcripts": "io",
    "ModelConfig": "model", "QualityModel": "model", "UntrainedModelWarning": "model",
    "RunSummary": "pipeline", "score_to_file": "pipeline",
    "recontact_labels": "recontact",
    "Evidence": "schema", "ModelInfo": "schema", "Transcript": "schema",
    "TranscriptScore": "schema", "Turn": "schema", "TurnScore": "schema",
    "to_dataframe": "schema",
    "TrainingArgs": "training.train",
}

__all__ = [
    "AffineScaler", "Auditor", "Calibration", "ColumnMap", "Evidence", "InputError",
    "IsotonicCalibrator", "ModelConfig", "ModelInfo", "ModelLoadError", "NotFittedError",
    "QualauditError", "QualityModel", "RunSummary", "TemperatureScaler", "TrainingArgs", "Transcript",
    "TranscriptScore", "Turn", "TurnScore", "UntrainedModelWarning", "__version__",
    "iter_records", "read_transcripts", "recontact_labels", "score_to_file", "to_dataframe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qualaudit' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from .calibration import AffineScaler, Calibration, IsotonicCalibrator, TemperatureScaler
    from .errors import InputError, ModelLoadError, NotFittedError, QualauditError
    from .io import ColumnMap, iter_records, read_transcripts
    from .model import ModelConfig, QualityModel, UntrainedModelWarning
    from .pipeline import RunSummary, score_to_file
    from .recontact import recontact_labels
    from .schema import (
        Evidence,
        ModelInfo,
        Transcript,
        TranscriptScore,
        Turn,
        TurnScore,
        to_dataframe,
    )
    from .scorer import Auditor
    from .training.train import TrainingArgs

"""qualaudit: quality audits of customer-support conversations, AI and human agents alike.

    >>> from qualaudit import Auditor
    >>> auditor = Auditor.from_pretrained("path/to/model")
    >>> auditor.score({"id": "t1", "messages": [{"role": "user", "content": "Hi"}]}).resolution
"""

__version__ = "0.2.0"

from .calibration import Calibration, IsotonicCalibrator, TemperatureScaler  # noqa: E402
from .errors import InputError, ModelLoadError, NotFittedError, QualauditError  # noqa: E402
from .io import ColumnMap, iter_records, read_transcripts  # noqa: E402
from .model import ModelConfig, QualityModel, UntrainedModelWarning  # noqa: E402
from .pipeline import RunSummary, score_to_file  # noqa: E402
from .recontact import recontact_labels  # noqa: E402
from .schema import (  # noqa: E402
    Evidence,
    ModelInfo,
    Transcript,
    TranscriptScore,
    Turn,
    TurnScore,
    to_dataframe,
)
from .scorer import Auditor  # noqa: E402
from .train import TrainingArgs  # noqa: E402

__all__ = [
    "Auditor", "Calibration", "ColumnMap", "Evidence", "InputError", "IsotonicCalibrator",
    "ModelConfig", "ModelInfo", "ModelLoadError", "NotFittedError", "QualauditError",
    "QualityModel", "RunSummary", "TemperatureScaler", "TrainingArgs", "Transcript",
    "TranscriptScore", "Turn", "TurnScore", "UntrainedModelWarning", "__version__", "iter_records",
    "read_transcripts", "recontact_labels", "score_to_file", "to_dataframe",
]

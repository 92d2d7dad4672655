"""Which turns drove a score: leave-one-out contributions and the top turns.

The heads compute each conversation output with every turn left out of the pooling in turn
(heads.ConversationHeads); here those outputs become contributions in the units a user reads:
the change in the target's (temperature-scaled) logit, or in the empathy score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

from .calibration import Calibration, TemperatureScaler, log_softmax, logit
from .heads import POSITIVE_FROM, HeadSpec, p_positive
from .schema import Evidence


def target_logit(calibration: Calibration, spec: HeadSpec, logits: np.ndarray) -> np.ndarray:
    """The logit of what the target reports (for a 5-level head, of P(level > 0)).

    A temperature-scaled (or affine: `AffineScaler` is one) or uncalibrated head is read off
    its calibrated logits, never clipped, so that confident scores keep their evidence. An
    isotonic head is read off the calibrated probability (clipped to [1e-6, 1 - 1e-6]): its
    steps can flatten differences, but the sign always agrees with the score reported.
    """
    z = logits.astype(np.float64)
    calibrator = calibration.get(spec.name)
    if calibrator is not None and not isinstance(calibrator, TemperatureScaler):
        probs = calibration.predict_proba(spec.name, z, spec.binary)
        return logit(probs if spec.binary else p_positive(probs))
    if calibrator is not None:
        z = calibration.calibrated_logits(spec.name, z, spec.binary)
    if spec.binary:
        return z
    log_p = log_softmax(z)
    return (logsumexp(log_p[..., POSITIVE_FROM:], axis=-1)
            - logsumexp(log_p[..., :POSITIVE_FROM], axis=-1))


def logit_contributions(calibration: Calibration, spec: HeadSpec, logits: np.ndarray,
                        left_out: np.ndarray) -> np.ndarray:
    """(T,): how much each turn raised the target's logit; `left_out` (T, *shape) holds the
    logits with each turn left out of the pooling. Changes within float32 rounding of the
    logit are set to zero: leaving such a turn out changes nothing."""
    full = target_logit(calibration, spec, logits)
    contributions = full - target_logit(calibration, spec, left_out)
    return np.where(np.abs(contributions) > 1e-6 * max(1.0, abs(float(full))), contributions, 0.0)


def mean_contributions(values: np.ndarray) -> np.ndarray | None:
    """How much each value raised the mean: mean - mean of the others. None for a single
    value, whose removal leaves no mean to compare with."""
    n = len(values)
    if n < 2:
        return None
    return values.mean() - (values.sum() - values) / (n - 1)


def top_evidence(contributions: np.ndarray, indices: Sequence[int], roles: Sequence[str],
                 k: int) -> list[Evidence]:
    """The k turns whose removal moves the score most (largest |contribution|, earlier turn
    first on ties); contributions are signed: positive means the turn raised the score. A
    turn whose removal changes nothing is no evidence and is left out."""
    contributions = np.asarray(contributions, dtype=np.float64).reshape(-1)
    moved = [i for i in range(len(contributions)) if abs(contributions[i]) > 1e-12]
    order = sorted(moved, key=lambda i: (-abs(contributions[i]), i))[:k]
    return [Evidence(int(indices[i]), roles[i], float(contributions[i])) for i in order]

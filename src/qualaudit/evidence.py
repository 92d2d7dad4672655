"""Which turns drove a score: leave-one-out contributions and the top turns.

The heads compute each conversation output with every turn left out of the pooling in turn
(heads.ConversationHeads); here those outputs become contributions in the units a user reads:
the change in the target's calibrated logit, or in the empathy score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .calibration import Calibration, logit
from .heads import HeadSpec, p_positive
from .schema import Evidence


def target_logit(calibration: Calibration, spec: HeadSpec, logits: np.ndarray) -> np.ndarray:
    """The calibrated logit of what the target reports: P(level > 0) for a 5-level head."""
    probs = calibration.predict_proba(spec.name, logits.astype(np.float64), spec.binary)
    return logit(probs if spec.binary else p_positive(probs))


def logit_contributions(calibration: Calibration, spec: HeadSpec, logits: np.ndarray,
                        left_out: np.ndarray) -> np.ndarray:
    """(T,): how much each turn raised the target's calibrated logit; `left_out` (T, *shape)
    holds the logits with each turn left out of the pooling."""
    return target_logit(calibration, spec, logits) - target_logit(calibration, spec, left_out)


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
    first on ties); contributions are signed: positive means the turn raised the score."""
    contributions = np.asarray(contributions, dtype=np.float64).reshape(-1)
    order = sorted(range(len(contributions)), key=lambda i: (-abs(contributions[i]), i))[:k]
    return [Evidence(int(indices[i]), roles[i], float(contributions[i])) for i in order]

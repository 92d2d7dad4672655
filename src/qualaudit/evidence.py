"""Which turns drove a score: the largest leave-one-out contributions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .schema import Evidence


def top_evidence(contributions: np.ndarray, indices: Sequence[int], roles: Sequence[str],
                 k: int) -> list[Evidence]:
    """The k turns whose removal moves the score most (largest |contribution|, earlier turn
    first on ties); contributions are signed: positive means the turn raised the score."""
    contributions = np.asarray(contributions, dtype=np.float64).reshape(-1)
    order = sorted(range(len(contributions)), key=lambda i: (-abs(contributions[i]), i))[:k]
    return [Evidence(int(indices[i]), roles[i], float(contributions[i])) for i in order]

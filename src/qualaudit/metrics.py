"""Every metric of the project on numpy arrays: calibration, discrimination, agreement
(F1, kappa, Spearman), ordinal distances (NMD, RSNOD) and bootstrap intervals (plain and
clustered). Used by training, the reports and the benchmarks alike.

Shared conventions: a 1-D `probs` is a binary head (the probability of the positive class);
an array with 2 or more dimensions is categorical, classes on the last axis, leading axes
flattened (so empathy's (N, 3, 3) counts as 3N rows of 3 classes). Targets are hard (0/1 for
binary, class indices of shape `probs.shape[:-1]` for categorical) or soft (a probability per
row for binary, a distribution of shape `probs.shape` for categorical, e.g. how annotators
split). Invalid arguments raise `ValueError` naming what was expected and what was found.

Example:
    >>> probs = np.array([0.9, 0.2, 0.7]); labels = np.array([1, 0, 0])
    >>> round(brier_score(probs, labels), 3)
    0.18
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

# Probabilities are clipped to this before taking logs: one probability of exactly 0 on an
# observed outcome would make the whole NLL infinite (sklearn's log_loss does the same).
NLL_EPS = 1e-15
_PROB_TOL = 1e-6  # float32 softmax outputs may stray this far outside [0, 1]
_PROB_SUM_TOL = 1e-4  # predicted rows must sum to 1 this closely
_TARGET_SUM_TOL = 1e-2  # soft targets (rounded annotator shares) may be this far off, then renormalised


def _float_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array; found {type(values).__name__} ({exc})") from exc
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name}: expected finite numbers; found {bad} NaN or infinite value(s)")
    return array


def targets_as_float(targets: Any, scores_shape: tuple[int, ...], binary: bool,
                     name: str = "targets") -> np.ndarray:
    """Hard or soft targets as float64 probabilities, checked against the scores' shape.

    Binary: same shape as the scores, values in [0, 1]. Categorical (classes on the last
    axis of `scores_shape`): class indices of shape `scores_shape[:-1]` become one-hot rows;
    distributions of shape `scores_shape` must be in [0, 1] and sum to 1 (within 0.01, then
    renormalised). Shared with `calibration` so both read targets the same way.
    """
    target_array = _float_array(targets, name)
    if binary:
        if target_array.shape != tuple(scores_shape):
            raise ValueError(f"{name}: expected shape {tuple(scores_shape)} (one 0/1 label or "
                             f"probability per score); found shape {target_array.shape}")
        if target_array.size and (target_array.min() < 0 or target_array.max() > 1):
            raise ValueError(f"{name}: expected values in [0, 1]; found values in "
                             f"[{target_array.min():g}, {target_array.max():g}]")
        return target_array
    lead, n_classes = tuple(scores_shape[:-1]), int(scores_shape[-1])
    if target_array.shape == lead:
        index = np.rint(target_array)
        if target_array.size and (np.any(index != target_array) or index.min() < 0
                                  or index.max() >= n_classes):
            raise ValueError(
                f"{name}: hard targets of shape {lead} must be class indices in [0, {n_classes}); "
                f"found values in [{target_array.min():g}, {target_array.max():g}]. Soft targets "
                f"need shape {tuple(scores_shape)} (one distribution per row)")
        return np.eye(n_classes)[index.astype(np.int64)]
    if target_array.shape == tuple(scores_shape):
        if target_array.size and (target_array.min() < 0 or target_array.max() > 1):
            raise ValueError(f"{name}: soft targets must be probabilities in [0, 1]; found values "
                             f"in [{target_array.min():g}, {target_array.max():g}]")
        sums = target_array.sum(axis=-1, keepdims=True)
        off = np.abs(sums - 1.0)
        if off.size and off.max() > _TARGET_SUM_TOL:
            raise ValueError(f"{name}: each soft target row must sum to 1; found a row summing "
                             f"to {float(sums.ravel()[np.argmax(off)]):g}")
        return target_array / sums
    raise ValueError(f"{name}: expected class indices of shape {lead} or distributions of shape "
                     f"{tuple(scores_shape)}; found shape {target_array.shape}")


def _probs_and_targets(probs: Any, targets: Any) -> tuple[bool, np.ndarray, np.ndarray]:
    """(binary, probs, targets): binary as (N,) arrays, categorical flattened to (M, K)."""
    p = _float_array(probs, "probs")
    if p.ndim == 0 or p.shape[0] == 0 or (p.ndim > 1 and p.shape[-1] < 2):
        raise ValueError("probs: expected a non-empty (N,) array of positive-class probabilities "
                         f"or (..., K) class probabilities with K >= 2; found shape {p.shape}")
    if p.min() < -_PROB_TOL or p.max() > 1 + _PROB_TOL:
        raise ValueError(f"probs: expected probabilities in [0, 1]; found values in "
                         f"[{p.min():g}, {p.max():g}] (pass probabilities, not logits)")
    p = np.clip(p, 0.0, 1.0)
    binary = p.ndim == 1
    y = targets_as_float(targets, p.shape, binary)
    if binary:
        return True, p, y
    sums = p.sum(axis=-1)
    if np.abs(sums - 1).max() > _PROB_SUM_TOL:
        raise ValueError(f"probs: each row must sum to 1 over the last axis; found a row summing "
                         f"to {float(sums.ravel()[np.argmax(np.abs(sums - 1))]):g}")
    n_classes = p.shape[-1]
    return False, p.reshape(-1, n_classes), y.reshape(-1, n_classes)


def expected_calibration_error(probs: Any, targets: Any, n_bins: int = 15) -> float:
    """Expected calibration error: how far stated confidence is from observed frequency.

    Equal-width bins over [0, 1]; the bin-size-weighted mean of |mean outcome - mean
    confidence|. Binary: bins on the positive-class probability, outcome = the (possibly
    soft) label. Categorical: top-label ECE, confidence = the largest class probability and
    outcome = the target's probability of that class (the expected correctness, which is
    0/1 for hard targets). 0 is perfect; the maximum is 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer; found {n_bins!r}")
    binary, p, y = _probs_and_targets(probs, targets)
    if binary:
        confidence, outcome = p, y
    else:
        rows = np.arange(p.shape[0])
        predicted = p.argmax(axis=1)
        confidence, outcome = p[rows, predicted], y[rows, predicted]
    # bins are (lo, hi]; a confidence of exactly 0 joins the first bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gaps = np.bincount(bins, weights=outcome - confidence, minlength=n_bins)
    return float(np.abs(gaps).sum() / confidence.size)


def brier_score(probs: Any, targets: Any) -> float:
    """Mean squared distance between predicted probabilities and targets (lower is better).

    Binary: mean of (p - y)^2, in [0, 1]. Categorical: mean over rows of the squared
    distance summed over classes, in [0, 2]. Rewards calibration and sharpness together.
    """
    binary, p, y = _probs_and_targets(probs, targets)
    if binary:
        return float(np.mean((p - y) ** 2))
    return float(np.mean(np.sum((p - y) ** 2, axis=1)))


def nll(probs: Any, targets: Any) -> float:
    """Mean negative log-likelihood (cross-entropy, in nats) of the targets under `probs`.

    Soft targets give the cross-entropy against the target distribution. Probabilities are
    clipped to [1e-15, 1 - 1e-15] first, so one confident miss is large but finite.
    """
    binary, p, y = _probs_and_targets(probs, targets)
    if binary:
        p = np.clip(p, NLL_EPS, 1 - NLL_EPS)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    return float(-np.mean(np.sum(y * np.log(np.maximum(p, NLL_EPS)), axis=1)))


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative.

    `scores` are any monotone scores (logits or probabilities), `labels` 0/1 (or bool).
    Returns float('nan') when `labels` holds a single class, where AUROC is undefined; small
    cohorts and bootstrap resamples hit this routinely, so it is not an error.
    """
    s = _float_array(scores, "scores")
    y = _float_array(labels, "labels")
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores: expected a non-empty 1-D array; found shape {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels: expected shape {s.shape} (one 0/1 label per score); "
                         f"found shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels: expected 0/1 labels; found values {np.unique(y)[:10].tolist()}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # rank-sum (Mann-Whitney) form, ties counting half: sklearn's value without its per-call
    # validation, which dominates a thousand bootstrap resamples
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(
    values: Any,
    statistic: Callable[..., Any] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) for a statistic of one sample.

    Args:
        values: the sample, resampled along its first axis; or a tuple of equally long arrays
            resampled together as pairs (e.g. `(scores, labels)`), passed positionally.
        statistic: a function of the resampled value(s) returning a number; default the mean
            of a 1-D sample (computed vectorised). NaN results (e.g. AUROC of a resample with
            one class) are dropped; if all are NaN the interval is (nan, nan).
        n_resamples, confidence, seed: the number of resamples, the interval's coverage and
            the random seed (the same seed gives the same interval).

    Example:
        >>> low, high = bootstrap_ci(np.array([0.0, 1.0, 1.0, 0.0, 1.0]))
        >>> bool(low < 0.6 < high)
        True
        >>> low, high = bootstrap_ci((scores, labels), auroc)  # doctest: +SKIP
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise ValueError(f"n_resamples: expected a positive integer; found {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), e.g. 0.95; found {confidence!r}")
    paired = isinstance(values, tuple)
    arrays = [np.asarray(v) for v in (values if paired else (values,))]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise ValueError("values: expected an array or a tuple of arrays with a first axis")
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError("values: expected a non-empty sample; found 0 items")
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"values: the arrays must be equally long; found lengths "
                         f"{[a.shape[0] for a in arrays]}")
    rng = np.random.default_rng(seed)
    if statistic is None:
        if paired or arrays[0].ndim != 1:
            raise ValueError("values: the default statistic (mean) needs one 1-D array; pass "
                             "`statistic` for paired or multi-dimensional samples")
        sample = _float_array(arrays[0], "values")
        # chunks keep the (resamples, n) index matrix to a few million entries
        chunk = max(1, 4_000_000 // n)
        stats = np.concatenate([
            sample[rng.integers(0, n, size=(min(chunk, n_resamples - start), n))].mean(axis=1)
            for start in range(0, n_resamples, chunk)
        ])
    else:
        stats = np.empty(n_resamples)
        for i in range(n_resamples):
            index = rng.integers(0, n, size=n)
            stats[i] = float(statistic(*(a[index] for a in arrays)))
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


# ------------------------------------------------------------- agreement and ranking
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson on average ranks); NaN when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def binary_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class; NaN when there are no positives, predicted or true."""
    predicted, labels = np.asarray(predicted, bool), np.asarray(labels, bool)
    tp = np.sum(predicted & labels)
    wrong = np.sum(predicted != labels)
    return float(2 * tp / (2 * tp + wrong)) if 2 * tp + wrong else float("nan")


def uar(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted average recall of the two classes (balanced accuracy); NaN with one class."""
    predicted, labels = np.asarray(predicted, bool), np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float((np.mean(predicted[labels]) + np.mean(~predicted[~labels])) / 2)


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean F1 over the classes present in the labels or the predictions (as scikit-learn)."""
    classes = np.union1d(predicted, labels)
    return float(np.mean([binary_f1(predicted == c, labels == c) for c in classes]))


def cohen_kappa(a: Any, b: Any, levels: Any, weighted: bool = False) -> float:
    """Cohen's kappa of two ratings over `levels` (quadratic weights when `weighted`); NaN
    when there is nothing to compare or chance agreement is total (one rating constant),
    where kappa is undefined."""
    a, b, levels = (np.asarray(x) for x in (a, b, levels))
    if a.size == 0:
        return float("nan")
    k = len(levels)
    ia, ib = np.searchsorted(levels, a), np.searchsorted(levels, b)
    observed = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k) / a.size
    expected = np.outer(observed.sum(1), observed.sum(0))
    diff = np.subtract.outer(np.arange(k), np.arange(k))
    weights = diff.astype(float) ** 2 if weighted else (diff != 0).astype(float)
    chance = float((weights * expected).sum())
    return float("nan") if chance < 1e-12 else 1 - float((weights * observed).sum()) / chance


# ------------------------------------------------------------- ordinal distributions
def nmd(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Normalised Match Distance per row of (N, L) distributions over ordered levels: the
    L1 distance between the cumulative distributions / (L - 1); 0 = same, 1 = opposite ends."""
    pred, truth = _normalised(pred), _normalised(truth)
    return np.abs(np.cumsum(pred, 1) - np.cumsum(truth, 1)).sum(1) / (pred.shape[1] - 1)


def rsnod(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Root Symmetric Normalised Order-aware Divergence per row (Sakai 2018, NTCIR-14 STC-3).

    DW_i = sum_j |i - j| (p_j - q_j)^2; OD(p || q) = the mean of DW_i over the levels where
    p_i > 0; RSNOD = sqrt(((OD(p || q) + OD(q || p)) / 2) / (L - 1)).
    """
    pred, truth = _normalised(pred), _normalised(truth)
    levels = np.arange(pred.shape[1])
    distance = np.abs(levels[:, None] - levels[None, :])  # (L, L)
    dw = ((pred - truth) ** 2) @ distance  # (N, L): DW_i per row (distance is symmetric)

    def od(p: np.ndarray) -> np.ndarray:
        support = p > 0
        return (dw * support).sum(1) / support.sum(1)

    return np.sqrt((od(pred) + od(truth)) / 2 / (pred.shape[1] - 1))


def _normalised(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p / p.sum(1, keepdims=True)


# ------------------------------------------------------------- clustered bootstrap
def cluster_bootstrap(statistic: Callable[[np.ndarray], Any], groups: np.ndarray,
                      n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, ...) values of `statistic(unit indices)` over resamples of whole groups.

    The turns of one transcript are not independent, so transcripts (groups) are drawn with
    replacement and bring all their units. Draws are made as `bootstrap_ci`
    makes them (with one unit per group both give the same resamples); one set of draws
    serves every system, so differences between systems are paired.
    """
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    _, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        drawn = rng.integers(0, starts.size, size=starts.size)
        c = counts[drawn]
        index = np.repeat(starts[drawn] - np.cumsum(c) + c, c) + np.arange(c.sum())
        values.append(statistic(order[index]))
    return np.asarray(values, dtype=np.float64)


def percentile_ci(samples: np.ndarray, confidence: float = 0.95) -> list[float]:
    """Percentile interval of bootstrap values, NaN values (undefined resamples) dropped."""
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return [float("nan"), float("nan")]
    alpha = (1 - confidence) / 2
    return [float(x) for x in np.quantile(samples, [alpha, 1 - alpha])]

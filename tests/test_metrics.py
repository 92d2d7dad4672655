"""Metrics: properties on synthetic data rather than golden numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from qualaudit.metrics import (
    auroc,
    bootstrap_ci,
    brier_score,
    cohen_kappa,
    expected_calibration_error,
    nll,
)

PROPER_METRICS = [brier_score, nll, expected_calibration_error]


def calibrated_binary(n: int = 20_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    probs = rng.random(n)
    return probs, (rng.random(n) < probs).astype(int)


def calibrated_categorical(n: int = 20_000, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return probs, np.minimum(labels, k - 1)


def sharpen(probs: np.ndarray, power: float = 4.0) -> np.ndarray:
    """Over-confident version of `probs` (same argmax, pushed towards 0/1)."""
    if probs.ndim == 1:
        odds = (probs / (1 - probs)) ** power
        return odds / (1 + odds)
    sharp = probs**power
    return sharp / sharp.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------ ECE
def test_ece_small_when_calibrated_large_when_not():
    probs, labels = calibrated_binary()
    assert expected_calibration_error(probs, labels) < 0.02
    assert expected_calibration_error(sharpen(probs), labels) > 0.1
    probs, labels = calibrated_categorical()
    assert expected_calibration_error(probs, labels) < 0.02
    assert expected_calibration_error(sharpen(probs), labels) > 0.1


def test_ece_is_zero_when_soft_targets_equal_probabilities():
    probs, _ = calibrated_binary(n=1_000)
    assert expected_calibration_error(probs, probs) == pytest.approx(0.0, abs=1e-12)
    probs, _ = calibrated_categorical(n=1_000)
    assert expected_calibration_error(probs, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_confident_wrong_predictions_is_one():
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0, 1])) == 1.0
    assert expected_calibration_error(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 0])) == 1.0


def test_ece_bins_argument():
    probs, labels = calibrated_binary(n=2_000)
    one_bin = expected_calibration_error(probs, labels, n_bins=1)
    # with one bin ECE is just |mean outcome - mean confidence|
    assert one_bin == pytest.approx(abs(labels.mean() - probs.mean()))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_bins"):
            expected_calibration_error(probs, labels, n_bins=bad)


# --------------------------------------------------------------------------- Brier and NLL
def test_brier_bounds_and_reference_points():
    labels = np.array([0, 1, 1, 0])
    assert brier_score(labels.astype(float), labels) == 0.0
    assert brier_score(1.0 - labels, labels) == 1.0
    assert brier_score(np.full(4, 0.5), labels) == 0.25
    one_hot = np.eye(3)[[0, 2, 1]]
    assert brier_score(one_hot, np.array([0, 2, 1])) == 0.0
    assert brier_score(one_hot, np.array([1, 0, 2])) == 2.0


def test_nll_reference_points():
    labels = np.array([0, 1, 1, 0, 1])
    assert nll(np.full(5, 0.5), labels) == pytest.approx(math.log(2))
    assert nll(np.full((5, 4), 0.25), np.array([0, 1, 2, 3, 0])) == pytest.approx(math.log(4))
    # a confident miss is large but finite (probabilities are clipped)
    miss = nll(np.array([0.0, 1.0]), np.array([1, 0]))
    assert math.isfinite(miss) and miss > 30


@pytest.mark.parametrize("metric", [brier_score, nll])
def test_proper_scores_prefer_the_true_probabilities(metric):
    probs, labels = calibrated_binary()
    assert metric(probs, labels) < metric(sharpen(probs), labels)
    assert metric(probs, labels) < metric(np.full_like(probs, labels.mean()), labels)
    probs, labels = calibrated_categorical()
    assert metric(probs, labels) < metric(sharpen(probs), labels)


def test_soft_target_nll_is_cross_entropy_minimised_at_the_target():
    rng = np.random.default_rng(2)
    targets = rng.dirichlet(np.ones(3), size=500)
    entropy = -np.mean(np.sum(targets * np.log(targets), axis=1))
    assert nll(targets, targets) == pytest.approx(entropy)
    assert nll(rng.dirichlet(np.ones(3), size=500), targets) > entropy


@pytest.mark.parametrize("metric", PROPER_METRICS)
def test_hard_targets_equal_one_hot_soft_targets(metric):
    probs, labels = calibrated_categorical(n=3_000)
    assert metric(probs, labels) == pytest.approx(metric(probs, np.eye(4)[labels]))
    probs, labels = calibrated_binary(n=3_000)
    assert metric(probs, labels) == pytest.approx(metric(probs, labels.astype(float)))


@pytest.mark.parametrize("metric", PROPER_METRICS)
def test_leading_axes_are_flattened(metric):
    """Empathy-shaped (N, 3, 3) probabilities equal the same rows as (3N, 3)."""
    probs, labels = calibrated_categorical(n=600, k=3)
    stacked = metric(probs.reshape(200, 3, 3), labels.reshape(200, 3))
    assert stacked == pytest.approx(metric(probs, labels))


@pytest.mark.parametrize("metric", PROPER_METRICS)
@pytest.mark.parametrize(
    ("probs", "targets", "pattern"),
    [
        (np.array([0.2, 1.7]), np.array([0, 1]), r"probabilities in \[0, 1\].*not logits"),
        (np.array([[0.2, 0.2], [0.5, 0.5]]), np.array([0, 1]), r"sum to 1"),
        (np.array([0.2, 0.7]), np.array([0, 1, 1]), r"expected shape \(2,\).*found shape \(3,\)"),
        (np.array([0.2, 0.7]), np.array([0, 2]), r"values in \[0, 1\]"),
        (np.array([[0.5, 0.5]]), np.array([2]), r"class indices in \[0, 2\)"),
        (np.array([[0.5, 0.5]]), np.array([[0.5, 0.5, 0.0]]), r"found shape \(1, 3\)"),
        (np.array([0.2, np.nan]), np.array([0, 1]), r"finite"),
        (np.zeros(0), np.zeros(0), r"non-empty"),
    ],
)
def test_bad_inputs_say_what_was_expected(metric, probs, targets, pattern):
    with pytest.raises(ValueError, match=pattern):
        metric(probs, targets)


# ----------------------------------------------------------------------------------- AUROC
def test_auroc_matches_sklearn_and_reference_points():
    probs, labels = calibrated_binary(n=2_000)
    assert auroc(probs, labels) == pytest.approx(roc_auc_score(labels, probs))
    # any monotone transform (e.g. logits instead of probabilities) gives the same value
    assert auroc(np.log(probs / (1 - probs)), labels) == pytest.approx(auroc(probs, labels))
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels.astype(bool)) == 0.5


def test_auroc_single_class_is_nan():
    assert math.isnan(auroc(np.array([0.1, 0.9]), np.array([1, 1])))


@pytest.mark.parametrize(
    ("scores", "labels", "pattern"),
    [
        (np.array([0.1, 0.9]), np.array([0, 2]), "0/1 labels"),
        (np.array([0.1, 0.9]), np.array([0, 1, 1]), r"expected shape \(2,\)"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
    ],
)
def test_auroc_rejects_bad_input(scores, labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        auroc(scores, labels)


# ------------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_deterministic_and_brackets_the_sample_mean():
    values = np.random.default_rng(0).normal(3.0, 1.0, size=200)
    low, high = bootstrap_ci(values, seed=7)
    assert (low, high) == bootstrap_ci(values, seed=7)
    assert low < values.mean() < high
    # about +-1.96 standard errors
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.2)
    assert isinstance(low, float) and isinstance(high, float)


def test_bootstrap_covers_the_true_mean_most_of_the_time():
    rng = np.random.default_rng(123)
    hits = 0
    for trial in range(100):
        sample = rng.exponential(2.0, size=150)
        low, high = bootstrap_ci(sample, n_resamples=400, seed=trial)
        hits += low <= 2.0 <= high
    assert 85 <= hits <= 100


def test_bootstrap_wider_with_higher_confidence():
    values = np.random.default_rng(1).random(100)
    low90, high90 = bootstrap_ci(values, confidence=0.90)
    low99, high99 = bootstrap_ci(values, confidence=0.99)
    assert low99 < low90 < high90 < high99


def test_bootstrap_custom_and_paired_statistics():
    values = np.random.default_rng(2).normal(size=300)
    low, high = bootstrap_ci(values, np.median)
    assert low < np.median(values) < high
    probs, labels = calibrated_binary(n=400, seed=3)
    low, high = bootstrap_ci((probs, labels), auroc, n_resamples=200)
    assert 0.5 < low < auroc(probs, labels) < high <= 1.0


def test_bootstrap_drops_nan_statistics():
    assert all(math.isnan(v) for v in bootstrap_ci((np.ones(5), np.ones(5)), auroc,
                                                   n_resamples=20))
    assert bootstrap_ci(np.array([4.0]), n_resamples=10) == (4.0, 4.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "pattern"),
    [
        ((np.zeros(0),), {}, "non-empty"),
        ((np.zeros(5),), {"confidence": 95}, "confidence"),
        ((np.zeros(5),), {"n_resamples": 0}, "n_resamples"),
        (((np.zeros(5), np.zeros(4)), auroc), {}, "equally long"),
        (((np.zeros(5), np.zeros(5)),), {}, "statistic"),
        ((np.zeros((5, 2)),), {}, "statistic"),
    ],
)
def test_bootstrap_rejects_bad_input(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        bootstrap_ci(*args, **kwargs)


def test_rank_auroc_and_kappa_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        score = rng.integers(0, 5, 40) / 4.0  # many ties
        label = rng.integers(0, 2, 40)
        assert auroc(score, label) == pytest.approx(roc_auc_score(label, score))
        a, b = rng.integers(-2, 3, 40), rng.integers(-2, 3, 40)
        assert cohen_kappa(a, b, np.arange(-2, 3), weighted=True) == pytest.approx(
            cohen_kappa_score(a, b, labels=np.arange(-2, 3), weights="quadratic"))
        assert cohen_kappa(a > 0, b > 0, np.arange(2)) == pytest.approx(cohen_kappa_score(a > 0, b > 0))
    assert math.isnan(cohen_kappa(np.ones(5), np.ones(5), np.arange(2)))
    assert math.isnan(auroc(np.ones(3), np.ones(3)))

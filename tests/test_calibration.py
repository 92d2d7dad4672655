"""Calibrators and the per-head Calibration mapping: properties on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qualaudit.calibration import (
    AffineScaler,
    Calibration,
    IsotonicCalibrator,
    TemperatureScaler,
    log_softmax,
    sigmoid,
    softmax,
)
from qualaudit.errors import NotFittedError, QualauditError
from qualaudit.metrics import brier_score, expected_calibration_error, nll

TRUE_T = 2.5
CALIBRATORS = [TemperatureScaler, AffineScaler, IsotonicCalibrator]


def sample_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One class index per row of `probs` (..., K), drawn from that row's distribution."""
    flat = probs.reshape(-1, probs.shape[-1])
    u = rng.random((flat.shape[0], 1))
    index = np.minimum((flat.cumsum(axis=1) < u).sum(axis=1), flat.shape[1] - 1)
    return index.reshape(probs.shape[:-1])


def overconfident_categorical(n: int = 20_000, k: int = 5, seed: int = 0, lead: tuple = ()):
    """(observed logits, labels, true probabilities): labels follow softmax(true logits), the
    model reports the true logits times TRUE_T, i.e. it is over-confident by that factor."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=(n, *lead, k))
    true_probs = softmax(true_logits)
    return true_logits * TRUE_T, sample_categorical(rng, true_probs), true_probs


def overconfident_binary(n: int = 20_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=n)
    true_probs = sigmoid(true_logits)
    return true_logits * TRUE_T, (rng.random(n) < true_probs).astype(int), true_probs


def split(*arrays, at: int):
    return [a[:at] for a in arrays], [a[at:] for a in arrays]


# ------------------------------------------------------------------------- link functions
def test_link_functions_are_stable_and_normalised():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    p = sigmoid(x)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[2] == 0.5 and p[0] == 0.0 and p[-1] == 1.0
    np.testing.assert_allclose(sigmoid(x) + sigmoid(-x), 1.0)

    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
    assert np.all(np.isfinite(log_softmax(logits)))
    np.testing.assert_allclose(np.exp(log_softmax(logits[1])), probs[1])
    # shift invariance: softmax only sees differences
    np.testing.assert_allclose(softmax(logits[1] + 500.0), probs[1])
    assert softmax(np.zeros((2, 3, 4), dtype=np.float32)).dtype == np.float64


# ---------------------------------------------------------------------- temperature scaling
def test_temperature_recovered_categorical():
    logits, labels, _ = overconfident_categorical()
    scaler = TemperatureScaler().fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(TRUE_T, rel=0.10)
    assert scaler.n_classes_ == 5


def test_temperature_recovered_binary():
    logits, labels, _ = overconfident_binary()
    scaler = TemperatureScaler(binary=True).fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(TRUE_T, rel=0.10)


def test_temperature_recovered_from_soft_targets():
    logits, _, true_probs = overconfident_categorical(n=5_000)
    assert TemperatureScaler().fit(logits, true_probs).temperature_ == pytest.approx(TRUE_T, rel=0.02)
    logits, _, true_probs = overconfident_binary(n=5_000)
    scaler = TemperatureScaler(binary=True).fit(logits, true_probs)
    assert scaler.temperature_ == pytest.approx(TRUE_T, rel=0.02)


def test_underconfident_model_gets_temperature_below_one():
    logits, labels, _ = overconfident_categorical(n=5_000)
    assert TemperatureScaler().fit(logits / TRUE_T**2, labels).temperature_ < 1.0


def test_one_hot_soft_targets_equal_hard_targets():
    logits, labels, _ = overconfident_categorical(n=3_000)
    hard = TemperatureScaler().fit(logits, labels).temperature_
    soft = TemperatureScaler().fit(logits, np.eye(5)[labels]).temperature_
    assert soft == pytest.approx(hard, rel=1e-6)


def test_temperature_keeps_ranking_and_argmax():
    logits, labels, _ = overconfident_categorical(n=2_000)
    scaler = TemperatureScaler().fit(logits, labels)
    np.testing.assert_array_equal(scaler.predict_proba(logits).argmax(-1), logits.argmax(-1))
    np.testing.assert_allclose(scaler.calibrated_logits(logits), logits / scaler.temperature_)
    z, y, _ = overconfident_binary(n=2_000)
    binary = TemperatureScaler(binary=True).fit(z, y)
    order = np.argsort(z)
    assert np.all(np.diff(binary.predict_proba(z)[order]) >= 0)


def test_all_zero_logits_give_temperature_one():
    assert TemperatureScaler(binary=True).fit(np.zeros(10), np.arange(10) % 2).temperature_ == 1.0


def test_sample_weight_zero_equals_dropping_rows():
    logits, labels, _ = overconfident_categorical(n=4_000)
    weights = np.r_[np.ones(2_000), np.zeros(2_000)]
    weighted = TemperatureScaler().fit(logits, labels, sample_weight=weights).temperature_
    subset = TemperatureScaler().fit(logits[:2_000], labels[:2_000]).temperature_
    assert weighted == pytest.approx(subset, rel=1e-4)


def test_integer_weights_equal_repetition():
    z, y, _ = overconfident_binary(n=1_000)
    weights = np.where(np.arange(1_000) % 3 == 0, 2.0, 1.0)
    repeated = np.repeat(np.arange(1_000), weights.astype(int))
    a = TemperatureScaler(binary=True).fit(z, y, sample_weight=weights).temperature_
    b = TemperatureScaler(binary=True).fit(z[repeated], y[repeated]).temperature_
    assert a == pytest.approx(b, rel=1e-4)


# ------------------------------------------------------------------------ affine scaling
BIAS = np.array([0.0, -0.8, 0.3, 0.9, -0.4])


def shifted_categorical(n: int = 20_000, seed: int = 1):
    """(observed logits, labels): labels follow softmax(observed / TRUE_T + BIAS), so the
    model is over-confident and its classes are off on average: no temperature fixes that."""
    rng = np.random.default_rng(seed)
    observed = rng.normal(0.0, 1.5, size=(n, 5)) * TRUE_T
    return observed, sample_categorical(rng, softmax(observed / TRUE_T + BIAS))


def test_affine_recovers_temperature_and_offsets_where_a_temperature_cannot():
    (z, y), (z_test, y_test) = split(*shifted_categorical(), at=10_000)
    affine = AffineScaler().fit(z, y)
    assert affine.temperature_ == pytest.approx(TRUE_T, rel=0.10)
    np.testing.assert_allclose(affine.bias_, BIAS, atol=0.1)
    temperature = TemperatureScaler().fit(z, y)
    share = np.bincount(y_test, minlength=5) / len(y_test)

    def off_on_average(scaler) -> float:  # the worst class's mean probability minus its share
        return float(np.abs(scaler.predict_proba(z_test).mean(axis=0) - share).max())

    assert off_on_average(affine) < 0.01 and off_on_average(temperature) > 0.03


def test_affine_binary_is_platt_scaling_and_keeps_the_ranking():
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 3.0, size=20_000)
    y = (rng.random(20_000) < sigmoid(z / TRUE_T - 1.0)).astype(int)
    affine = AffineScaler(binary=True).fit(z, y)
    assert affine.temperature_ == pytest.approx(TRUE_T, rel=0.10)
    assert affine.bias_.tolist() == pytest.approx([-1.0], abs=0.1)
    order = np.argsort(z)
    assert np.all(np.diff(affine.predict_proba(z)[order]) >= 0)
    restored = AffineScaler.from_dict(json.loads(json.dumps(affine.to_dict())))
    np.testing.assert_allclose(restored.predict_proba(z), affine.predict_proba(z))


@pytest.mark.parametrize("n_classes, bias, pattern", [
    (None, None, "missing field 'bias'"), (None, [0.0, 1.0], "expected 1"), (None, ["a"], "expected 1"),
    (None, [float("inf")], "finite"), (None, [10**400], "finite"), (None, [True], "expected 1"),
    (5, [0.0, 0.1, 0.2], "expected 5"), (3, [0.0, None, 1.0], "expected 3")])
def test_affine_from_dict_rejects_a_bad_bias(n_classes, bias, pattern):
    data = {"method": "affine", "binary": n_classes is None, "n_classes": n_classes, "temperature": 1.0}
    if bias is not None:
        data["bias"] = bias
    with pytest.raises(QualauditError, match=pattern):
        AffineScaler.from_dict(data)


# ---------------------------------------------------------------- both calibrators
@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_fit_improves_heldout_metrics_categorical(calibrator_cls):
    logits, labels, _ = overconfident_categorical()
    (z_fit, y_fit), (z_test, y_test) = split(logits, labels, at=10_000)
    calibrator = calibrator_cls().fit(z_fit, y_fit)
    before, after = softmax(z_test), calibrator.predict_proba(z_test)
    assert nll(after, y_test) < nll(before, y_test)
    assert brier_score(after, y_test) < brier_score(before, y_test)
    assert expected_calibration_error(after, y_test) < 0.5 * expected_calibration_error(before, y_test)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_fit_improves_heldout_metrics_binary(calibrator_cls):
    logits, labels, _ = overconfident_binary()
    (z_fit, y_fit), (z_test, y_test) = split(logits, labels, at=10_000)
    calibrator = calibrator_cls(binary=True).fit(z_fit, y_fit)
    before, after = sigmoid(z_test), calibrator.predict_proba(z_test)
    assert nll(after, y_test) < nll(before, y_test)
    assert brier_score(after, y_test) < brier_score(before, y_test)
    assert expected_calibration_error(after, y_test) < 0.5 * expected_calibration_error(before, y_test)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_probabilities_valid_and_shapes_kept(calibrator_cls):
    logits, labels, _ = overconfident_categorical(n=2_000)
    calibrator = calibrator_cls().fit(logits, labels)
    for batch in (logits[:7], logits[0], logits[:6].reshape(2, 3, 5)):
        probs = calibrator.predict_proba(batch)
        assert probs.shape == batch.shape and probs.dtype == np.float64
        assert np.all((probs >= 0) & (probs <= 1))
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
        assert np.all(np.isfinite(calibrator.calibrated_logits(batch)))

    z, y, _ = overconfident_binary(n=2_000)
    binary = calibrator_cls(binary=True).fit(z, y)
    probs = binary.predict_proba(z[:9].astype(np.float32))
    assert probs.shape == (9,) and np.all((probs >= 0) & (probs <= 1))
    extreme = binary.calibrated_logits(np.array([-1e4, 0.0, 1e4]))
    assert np.all(np.isfinite(extreme)) and np.all(np.diff(extreme) >= 0)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_empathy_shaped_logits(calibrator_cls):
    """(N, 3 mechanisms, 3 levels): one calibrator over the last axis, leading axes flattened."""
    logits, labels, true_probs = overconfident_categorical(n=3_000, k=3, lead=(3,))
    assert logits.shape == (3_000, 3, 3) and labels.shape == (3_000, 3)
    for targets in (labels, true_probs):
        calibrator = calibrator_cls().fit(logits, targets, sample_weight=np.ones(3_000))
        probs = calibrator.predict_proba(logits)
        assert probs.shape == (3_000, 3, 3)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
        assert nll(probs, labels) < nll(softmax(logits), labels)
    scaler = TemperatureScaler().fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(TRUE_T, rel=0.15)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_calibrated_logits_reproduce_probabilities(calibrator_cls):
    logits, labels, _ = overconfident_categorical(n=3_000)
    calibrator = calibrator_cls().fit(logits, labels)
    np.testing.assert_allclose(softmax(calibrator.calibrated_logits(logits[:50])),
                               calibrator.predict_proba(logits[:50]), atol=1e-5)
    z, y, _ = overconfident_binary(n=3_000)
    binary = calibrator_cls(binary=True).fit(z, y)
    np.testing.assert_allclose(sigmoid(binary.calibrated_logits(z[:50])),
                               np.clip(binary.predict_proba(z[:50]), 1e-6, 1 - 1e-6), atol=1e-9)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_soft_binary_targets(calibrator_cls):
    z, _, true_probs = overconfident_binary(n=5_000)
    calibrator = calibrator_cls(binary=True).fit(z, true_probs)
    probs = calibrator.predict_proba(z)
    # soft targets carry the whole truth: the calibrated probabilities land close to it
    assert np.mean(np.abs(probs - true_probs)) < 0.02 < np.mean(np.abs(sigmoid(z) - true_probs))


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_fit_is_independent_of_row_order(calibrator_cls):
    logits, labels, _ = overconfident_categorical(n=2_000)
    order = np.random.default_rng(1).permutation(2_000)
    a = calibrator_cls().fit(logits, labels).predict_proba(logits[:20])
    b = calibrator_cls().fit(logits[order], labels[order]).predict_proba(logits[:20])
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_sklearn_style_construction_and_fit(calibrator_cls):
    calibrator = calibrator_cls(binary=True)
    assert vars(calibrator) == {"binary": True}
    z, y, _ = overconfident_binary(n=500)
    assert calibrator.fit(z, y) is calibrator
    assert "binary=True" in repr(calibrator)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_unfitted_use_raises_not_fitted(calibrator_cls):
    calibrator = calibrator_cls()
    name = calibrator_cls.__name__
    for call in (lambda: calibrator.predict_proba(np.zeros((2, 3))),
                 lambda: calibrator.calibrated_logits(np.zeros((2, 3))),
                 calibrator.to_dict):
        with pytest.raises(NotFittedError) as info:
            call()
        assert str(info.value) == f"{name} is not fitted yet; call fit(logits, targets) first"
    assert isinstance(info.value, QualauditError)


def test_unfitted_message_is_the_documented_one():
    with pytest.raises(NotFittedError, match=r"^TemperatureScaler is not fitted yet; "
                                             r"call fit\(logits, targets\) first$"):
        TemperatureScaler().predict_proba(np.zeros(3))


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
@pytest.mark.parametrize(
    ("binary", "logits", "targets", "kwargs", "pattern"),
    [
        (False, np.zeros((4, 3)), np.zeros(5), {}, r"targets: expected class indices of shape \(4,\) "
         r"or distributions of shape \(4, 3\); found shape \(5,\)"),
        (False, np.zeros(4), np.zeros(4), {}, r"logits: expected .*\(N, K\).*found shape \(4,\)"),
        (False, np.zeros((4, 1)), np.zeros(4), {}, r"K >= 2; found shape \(4, 1\)"),
        (False, np.zeros((4, 3)), np.array([0, 1, 2, 3]), {}, r"class indices in \[0, 3\)"),
        (False, np.zeros((4, 3)), np.array([0, 1.5, 2, 1]), {}, r"class indices"),
        (False, np.zeros((2, 3)), np.array([[0.5, 0.2, 0.1], [1, 0, 0]]), {}, r"sum to 1"),
        (False, np.zeros((2, 3)), np.array([[1.5, -0.5, 0], [1, 0, 0]]), {}, r"\[0, 1\]"),
        (False, np.zeros((4, 3)), np.zeros(4), {"sample_weight": np.ones(3)},
         r"sample_weight: expected shape \(4,\); found shape \(3,\)"),
        (False, np.zeros((4, 3)), np.zeros(4), {"sample_weight": -np.ones(4)}, r"non-negative"),
        (True, np.zeros(4), np.zeros(3), {}, r"targets: expected shape \(4,\).*found shape \(3,\)"),
        (True, np.zeros(4), np.array([0, 1, 2, 0]), {}, r"values in \[0, 1\]"),
        (True, np.array([0.0, np.nan, 1.0]), np.zeros(3), {}, r"finite.*1 NaN"),
        (True, np.zeros(0), np.zeros(0), {}, r"non-empty"),
    ],
)
def test_fit_rejects_bad_input_with_clear_messages(calibrator_cls, binary, logits, targets,
                                                   kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        calibrator_cls(binary=binary).fit(logits, targets, **kwargs)


@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_predict_rejects_wrong_class_count(calibrator_cls):
    logits, labels, _ = overconfident_categorical(n=500)
    calibrator = calibrator_cls().fit(logits, labels)
    with pytest.raises(ValueError, match=r"fitted on 5 classes, so expected shape \(\.\.\., 5\); "
                                         r"found shape \(10, 3\)"):
        calibrator.predict_proba(np.zeros((10, 3)))


# ------------------------------------------------------------------------ isotonic specifics
def test_isotonic_binary_is_monotone_and_bounded():
    z, y, _ = overconfident_binary(n=5_000)
    calibrator = IsotonicCalibrator(binary=True).fit(z, y)
    grid = np.linspace(-30, 30, 2_001)
    probs = calibrator.predict_proba(grid)
    assert np.all(np.diff(probs) >= 0)
    assert probs.min() >= 0 and probs.max() <= 1
    assert np.all(np.diff(calibrator.X_thresholds_[0]) >= 0)
    assert np.all(np.diff(calibrator.y_thresholds_[0]) >= 0)


def test_isotonic_categorical_per_class_maps_are_monotone():
    logits, labels, _ = overconfident_categorical(n=5_000)
    calibrator = IsotonicCalibrator().fit(logits, labels)
    assert len(calibrator.X_thresholds_) == len(calibrator.y_thresholds_) == 5
    for x, y in zip(calibrator.X_thresholds_, calibrator.y_thresholds_, strict=True):
        assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)


def test_isotonic_all_zero_row_falls_back_to_softmax():
    data = {"method": "isotonic", "binary": False, "n_classes": 3,
            "x_thresholds": [[0.0, 1.0]] * 3, "y_thresholds": [[0.0, 0.0]] * 3}
    calibrator = IsotonicCalibrator.from_dict(data)
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(calibrator.predict_proba(logits), softmax(logits))


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("calibrator_cls", CALIBRATORS)
def test_to_dict_round_trip_through_json_is_exact(calibrator_cls, binary):
    if binary:
        logits, labels, _ = overconfident_binary(n=3_000)
        probe = np.linspace(-20, 20, 401)
    else:
        logits, labels, _ = overconfident_categorical(n=3_000)
        probe = np.random.default_rng(5).normal(0, 5, size=(400, 5))
    calibrator = calibrator_cls(binary=binary).fit(logits, labels)
    data = json.loads(json.dumps(calibrator.to_dict(), allow_nan=False))
    assert data["method"] == calibrator_cls.method and data["binary"] is binary
    restored = calibrator_cls.from_dict(data)
    np.testing.assert_array_equal(restored.predict_proba(probe), calibrator.predict_proba(probe))
    np.testing.assert_array_equal(restored.calibrated_logits(probe),
                                  calibrator.calibrated_logits(probe))


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"method": "temperature", "binary": True, "n_classes": None, "temperature": -1.0},
         "positive"),
        ({"method": "temperature", "binary": True, "n_classes": None}, "missing field 'temperature'"),
        ({"method": "temperature", "binary": "yes", "n_classes": None, "temperature": 1.0},
         "field 'binary'"),
        ({"method": "temperature", "binary": False, "n_classes": 1, "temperature": 1.0},
         "n_classes"),
        ({"method": "isotonic", "binary": True, "n_classes": None,
          "x_thresholds": [[0.0, 1.0]], "y_thresholds": [[0.0]]}, "equally long"),
        ({"method": "isotonic", "binary": False, "n_classes": 3,
          "x_thresholds": [[0.0, 1.0]], "y_thresholds": [[0.0, 1.0]]}, "expected 3 list"),
        ({"method": "isotonic", "binary": True, "n_classes": None,
          "x_thresholds": [[1.0, 0.0]], "y_thresholds": [[0.0, 1.0]]}, "non-decreasing"),
    ],
)
def test_from_dict_rejects_malformed_data(data, pattern):
    cls = TemperatureScaler if data["method"] == "temperature" else IsotonicCalibrator
    with pytest.raises(QualauditError, match=pattern):
        cls.from_dict(data)


# -------------------------------------------------------------------------- Calibration
def fitted_calibration() -> Calibration:
    z, y, _ = overconfident_binary(n=2_000)
    logits, labels, _ = overconfident_categorical(n=2_000)
    empathy, empathy_labels, _ = overconfident_categorical(n=1_000, k=3, lead=(3,))
    return Calibration({
        "escalation.v1": TemperatureScaler(binary=True).fit(z, y),
        "repeat_inquiry.v1": IsotonicCalibrator(binary=True).fit(z, y),
        "resolution.v1": IsotonicCalibrator().fit(logits, labels),
        "empathy.v1": TemperatureScaler().fit(empathy, empathy_labels),
        "satisfaction.v1": AffineScaler().fit(logits, labels),
    })


PROBES = {
    "escalation.v1": (np.linspace(-15, 15, 61), True),
    "repeat_inquiry.v1": (np.linspace(-15, 15, 61), True),
    "resolution.v1": (np.random.default_rng(3).normal(0, 4, size=(40, 5)), False),
    "empathy.v1": (np.random.default_rng(4).normal(0, 4, size=(10, 3, 3)), False),
    "satisfaction.v1": (np.random.default_rng(6).normal(0, 4, size=(10, 5)), False),
}


def test_calibration_save_load_round_trip_is_identical(tmp_path):
    calibration = fitted_calibration()
    path = calibration.save(tmp_path / "model" / "calibration.json")
    assert path == tmp_path / "model" / "calibration.json"
    data = json.loads(path.read_text())
    assert data["format"] == 1
    assert {h: e["method"] for h, e in data["heads"].items()} == {
        "escalation.v1": "temperature", "repeat_inquiry.v1": "isotonic",
        "resolution.v1": "isotonic", "empathy.v1": "temperature", "satisfaction.v1": "affine"}
    loaded = Calibration.load(path)
    assert list(loaded) == list(calibration)
    for head, (logits, binary) in PROBES.items():
        np.testing.assert_array_equal(loaded.predict_proba(head, logits, binary),
                                      calibration.predict_proba(head, logits, binary))
        np.testing.assert_array_equal(loaded.calibrated_logits(head, logits, binary),
                                      calibration.calibrated_logits(head, logits, binary))
    assert loaded.to_dict() == calibration.to_dict()


def test_calibration_save_and_load_accept_a_directory(tmp_path):
    calibration = fitted_calibration()
    assert calibration.save(tmp_path) == tmp_path / "calibration.json"
    assert Calibration.load(tmp_path).to_dict() == calibration.to_dict()


def test_uncalibrated_heads_get_plain_links():
    calibration = Calibration({"escalation.v1": fitted_calibration()["escalation.v1"]})
    assert calibration.is_calibrated("escalation.v1")
    assert not calibration.is_calibrated("satisfaction.v1")
    logits = PROBES["satisfaction.v1"][0]
    np.testing.assert_array_equal(calibration.predict_proba("satisfaction.v1", logits, False),
                                  softmax(logits))
    np.testing.assert_array_equal(calibration.calibrated_logits("satisfaction.v1", logits, False),
                                  logits)
    z = np.array([-3.0, 0.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(Calibration().predict_proba("solution_given.v1", z, True),
                                  sigmoid(z))
    np.testing.assert_array_equal(Calibration().calibrated_logits("solution_given.v1", z, True), z)
    with pytest.raises(ValueError, match="K >= 2"):
        Calibration().predict_proba("resolution.v1", np.zeros((4, 1)), False)


def test_calibration_is_a_mapping():
    calibration = fitted_calibration()
    assert len(calibration) == 5 and "resolution.v1" in calibration
    del calibration["resolution.v1"]
    assert not calibration.is_calibrated("resolution.v1")
    calibration["resolution.v1"] = TemperatureScaler()
    with pytest.raises(NotFittedError, match="head 'resolution.v1'"):
        calibration.to_dict()
    with pytest.raises(TypeError, match="TemperatureScaler, AffineScaler or IsotonicCalibrator"):
        calibration["x.v1"] = object()


def test_binary_flag_must_match_the_calibrator():
    calibration = fitted_calibration()
    with pytest.raises(QualauditError, match="'escalation.v1'.*binary logits.*categorical"):
        calibration.predict_proba("escalation.v1", np.zeros((2, 5)), binary=False)
    with pytest.raises(QualauditError, match="'resolution.v1'.*categorical logits.*binary"):
        calibration.calibrated_logits("resolution.v1", np.zeros(2), binary=True)


def test_missing_file(tmp_path):
    path = tmp_path / "calibration.json"
    with pytest.raises(QualauditError, match=r"calibration\.json: calibration file not found"):
        Calibration.load(path)
    empty = Calibration.load(path, missing_ok=True)
    assert len(empty) == 0 and not empty.is_calibrated("escalation.v1")


def test_empty_calibration_round_trips(tmp_path):
    path = Calibration().save(tmp_path / "calibration.json")
    assert json.loads(path.read_text()) == {"format": 1, "heads": {}}
    assert len(Calibration.load(path)) == 0


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ({"format": 2, "heads": {}}, r"unknown calibration format 2"),
        ({"heads": {}}, r"'format'"),
        ({"format": 1, "heads": {"resolution.v1": {"method": "platt"}}},
         r"head 'resolution.v1': unknown calibration method 'platt'"),
        ({"format": 1, "heads": {"escalation.v1": {"method": "temperature", "binary": True,
                                                   "n_classes": None, "temperature": "hot"}}},
         r"head 'escalation.v1': field 'temperature'"),
        ({"format": 1, "heads": []}, r"'heads' must be an object"),
    ],
)
def test_bad_files_name_the_file_and_head(tmp_path, content, pattern):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(content))
    with pytest.raises(QualauditError, match=pattern) as info:
        Calibration.load(path)
    assert str(path) in str(info.value)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    with pytest.raises(QualauditError, match="not valid JSON") as info:
        Calibration.load(path, missing_ok=True)
    assert str(path) in str(info.value)

"""Per-head calibration: raw model logits -> probabilities that mean what they say.

Two kinds of head: binary (one logit per item, probability = sigmoid) and categorical
(logits (..., K), probabilities = softmax over the last axis; e.g. a 5-level scale (N, 5) or
empathy (N, 3, 3) = 3 mechanisms x 3 levels, calibrated by one calibrator over the last axis
with the leading axes flattened). Calibrators follow scikit-learn: `__init__` only stores
arguments, `fit` validates and returns self, learned state ends in `_`.

Example:
    >>> scaler = TemperatureScaler().fit(val_logits, val_labels)  # doctest: +SKIP
    >>> calibration = Calibration({"resolution.v1": scaler})  # doctest: +SKIP
    >>> calibration.save(model_dir / "calibration.json")  # doctest: +SKIP
    >>> calibration.predict_proba("resolution.v1", logits, binary=False)  # doctest: +SKIP

calibration.json (written by `Calibration.save`):
    {"format": 1,
     "heads": {"escalation.v1": {"method": "temperature", "binary": true, "n_classes": null,
                                 "temperature": 1.7},
               "satisfaction.v1": {"method": "affine", "binary": false, "n_classes": 5,
                                   "temperature": 1.1, "bias": [0.0, 0.2, 0.1, 0.4, 0.3]},
               "resolution.v1": {"method": "isotonic", "binary": false, "n_classes": 5,
                                 "x_thresholds": [[...], ...], "y_thresholds": [[...], ...]}}}
Isotonic maps are stored as their thresholds (one list per class) and applied with
np.interp, so loading needs no pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn.isotonic import IsotonicRegression

from .errors import NotFittedError, QualauditError
from .metrics import targets_as_float

FORMAT_VERSION = 1
CALIBRATION_FILENAME = "calibration.json"
TEMPERATURE_BOUNDS = (0.05, 20.0)
BIAS_BOUNDS = (-20.0, 20.0)
# Isotonic outputs of exactly 0 or 1 have infinite logits; clip so calibrated logits stay finite.
LOGIT_CLIP = 1e-6


# ------------------------------------------------------------------ stable link functions
def sigmoid(x: Any) -> np.ndarray:
    """Logistic function in float64, without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_softmax(x: Any, axis: int = -1) -> np.ndarray:
    """log(softmax(x)) in float64, computed stably (max subtracted, log-sum-exp)."""
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """Softmax in float64 over `axis` (the last by default): rows are >= 0 and sum to 1."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, with p clipped to [1e-6, 1 - 1e-6] so that certain answers stay finite."""
    p = np.clip(p, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


# ------------------------------------------------------------------------- validation
def _kind(binary: bool) -> str:
    return "binary" if binary else "categorical"


def _fit_arrays(logits: Any, targets: Any, sample_weight: Any, binary: bool,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, float targets and weights flattened to rows: binary (M,), categorical (M, K)."""
    z = np.asarray(logits, dtype=np.float64)
    if binary:
        if z.ndim < 1 or z.size == 0:
            raise ValueError(f"logits: expected a non-empty (N,) array of binary logits; "
                             f"found shape {z.shape}")
        lead = z.shape
    else:
        if z.ndim < 2 or z.shape[-1] < 2 or z.size == 0:
            raise ValueError(f"logits: expected a non-empty (N, K) or (N, ..., K) array of "
                             f"categorical logits with K >= 2; found shape {z.shape}")
        lead = z.shape[:-1]
    if not np.all(np.isfinite(z)):
        raise ValueError(f"logits: expected finite numbers; found "
                         f"{int(z.size - np.count_nonzero(np.isfinite(z)))} NaN or infinite value(s)")
    y = targets_as_float(targets, z.shape, binary)
    if sample_weight is None:
        w = np.ones(lead)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == 1 and w.shape[0] == lead[0] and len(lead) > 1:
            w = np.broadcast_to(w.reshape((-1,) + (1,) * (len(lead) - 1)), lead)
        if w.shape != lead:
            expected = f"({lead[0]},)" + (f" or {lead}" if len(lead) > 1 else "")
            raise ValueError(f"sample_weight: expected shape {expected}; found shape {w.shape}")
        if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError("sample_weight: expected finite, non-negative weights with a "
                             "positive sum")
    if binary:
        return z.ravel(), y.ravel(), w.ravel()
    n_classes = z.shape[-1]
    return z.reshape(-1, n_classes), y.reshape(-1, n_classes), w.ravel()


def _nll(scaled: np.ndarray, y: np.ndarray, w: np.ndarray, binary: bool) -> float:
    """Weighted negative log-likelihood of hard or soft targets `y` under calibrated logits
    (binary (M,), categorical (M, K)); `w` sums to 1."""
    if binary:
        return float(np.dot(w, np.logaddexp(0.0, scaled) - y * scaled))
    return float(-np.dot(w, np.sum(y * log_softmax(scaled), axis=1)))


def _predict_logits(calibrator: TemperatureScaler | IsotonicCalibrator, logits: Any) -> np.ndarray:
    calibrator._check_fitted()
    z = np.asarray(logits, dtype=np.float64)
    if not calibrator.binary and (z.ndim < 1 or z.shape[-1] != calibrator.n_classes_):
        raise ValueError(f"logits: {type(calibrator).__name__} was fitted on "
                         f"{calibrator.n_classes_} classes, so expected shape (..., "
                         f"{calibrator.n_classes_}); found shape {z.shape}")
    return z


def _check_categorical(z: np.ndarray) -> np.ndarray:
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(f"logits: expected categorical logits of shape (..., K) with K >= 2; "
                         f"found shape {z.shape}")
    return z


def _not_fitted(name: str) -> NotFittedError:
    return NotFittedError(f"{name} is not fitted yet; call fit(logits, targets) first")


def _field(data: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise QualauditError(f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise QualauditError(f"field {key!r}: expected {getattr(kind, '__name__', kind)}; "
                             f"found {value!r}")
    return value


def _finite_number(value: Any) -> bool:
    """A JSON number (not a bool) that is finite as a float; a huge integer is not."""
    try:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(float(value)))
    except OverflowError:
        return False


def _header(data: Any, method: str) -> tuple[bool, int | None]:
    """Check the fields every saved calibrator has; returns (binary, n_classes)."""
    if not isinstance(data, dict):
        raise QualauditError(f"expected a JSON object; found {type(data).__name__}")
    if data.get("method") != method:
        raise QualauditError(f"expected method {method!r}; found {data.get('method')!r}")
    binary = _field(data, "binary", bool)
    n_classes = data.get("n_classes")
    if binary and n_classes is not None:
        raise QualauditError(f"a binary calibrator has n_classes null; found {n_classes!r}")
    if not binary and (isinstance(n_classes, bool) or not isinstance(n_classes, int)
                       or n_classes < 2):
        raise QualauditError(f"field 'n_classes': expected an integer >= 2; found {n_classes!r}")
    return binary, n_classes


# ------------------------------------------------------------------------ calibrators
class TemperatureScaler:
    """One temperature T > 0 per head: probabilities = sigmoid/softmax(logits / T).

    T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; the
    ranking of items (and so AUROC) never changes. T minimises the (weighted) negative
    log-likelihood of hard or soft targets, found by bounded 1-D search on log T.

    Args:
        binary: True for a binary head (logits (N,), sigmoid); False for a categorical head
            (logits (..., K), softmax over the last axis).

    Example:
        >>> scaler = TemperatureScaler(binary=True).fit(val_logits, val_labels)  # doctest: +SKIP
        >>> probs = scaler.predict_proba(test_logits)  # doctest: +SKIP
    """

    method = "temperature"

    def __init__(self, binary: bool = False) -> None:
        self.binary = binary

    def __repr__(self) -> str:
        fitted = f", temperature_={self.temperature_:.4g}" if hasattr(self, "temperature_") else ""
        return f"{type(self).__name__}(binary={self.binary}{fitted})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise _not_fitted(type(self).__name__)

    def fit(self, logits: Any, targets: Any, sample_weight: Any = None) -> TemperatureScaler:
        """Learn `temperature_` on held-out logits and targets.

        Args:
            logits: binary (N,) or categorical (N, ..., K) raw logits.
            targets: binary 0/1 labels or probabilities, shape (N,); categorical class indices
                of shape logits.shape[:-1] or distributions of shape logits.shape.
            sample_weight: optional (N,) weights (or one per row of logits.shape[:-1]).
        """
        z, y, w = _fit_arrays(logits, targets, sample_weight, self.binary)
        w = w / w.sum()

        def loss(log_t: float) -> float:
            return _nll(z * math.exp(-log_t), y, w, self.binary)

        if np.all(z == 0):
            temperature = 1.0  # every temperature gives the same probabilities
        else:
            # NLL is convex in 1/T, hence unimodal in log T: bounded Brent search is reliable
            result = minimize_scalar(loss, bounds=tuple(math.log(b) for b in TEMPERATURE_BOUNDS),
                                     method="bounded", options={"xatol": 1e-6})
            temperature = float(math.exp(result.x))
        self.temperature_ = temperature
        self.n_classes_ = None if self.binary else int(z.shape[1])
        return self

    def calibrated_logits(self, logits: Any) -> np.ndarray:
        """logits / T, same shape (binary: calibrated logit; categorical: scaled logits)."""
        return _predict_logits(self, logits) / self.temperature_

    def predict_proba(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities, same shape as `logits` (binary: P(positive))."""
        scaled = self.calibrated_logits(logits)
        return sigmoid(scaled) if self.binary else softmax(scaled)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serialisable data (see `from_dict`)."""
        self._check_fitted()
        return {"method": self.method, "binary": bool(self.binary), "n_classes": self.n_classes_,
                "temperature": float(self.temperature_)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemperatureScaler:
        """A fitted scaler from `to_dict` output; QualauditError when the data is malformed."""
        binary, n_classes = _header(data, cls.method)
        temperature = _field(data, "temperature", (int, float))
        if not _finite_number(temperature) or temperature <= 0:
            raise QualauditError(f"field 'temperature': expected a positive number; "
                                 f"found {temperature!r}")
        self = cls(binary=binary)
        self.temperature_ = float(temperature)
        self.n_classes_ = n_classes
        return self


class AffineScaler(TemperatureScaler):
    """A temperature and an offset per class: probabilities = sigmoid/softmax(logits / T + b).

    A temperature can sharpen or soften a head's probabilities but not move them: a head
    whose positives are too rare (or too common) on average everywhere stays off. The offsets
    fix that calibration-in-the-large with K parameters more
    (one for a binary head, where this is Platt scaling; K - 1 free for K classes, the first
    class's offset being 0), few enough for a hundred items. A binary head's ranking never
    changes; a categorical head's class probabilities are re-weighted alike for every item.
    Fitted, like the temperature, by minimising the (weighted) negative log-likelihood of
    hard or soft targets (L-BFGS on log T and the offsets).
    """

    method = "affine"

    def __repr__(self) -> str:
        fitted = (f", temperature_={self.temperature_:.4g}, bias_={np.round(self.bias_, 4).tolist()}"
                  if hasattr(self, "temperature_") else "")
        return f"{type(self).__name__}(binary={self.binary}{fitted})"

    def fit(self, logits: Any, targets: Any, sample_weight: Any = None) -> AffineScaler:
        """Learn `temperature_` and `bias_` (shape (1,) binary, (K,) categorical).

        Arguments as for `TemperatureScaler.fit`.
        """
        z, y, w = _fit_arrays(logits, targets, sample_weight, self.binary)
        w = w / w.sum()

        def unpack(theta: np.ndarray) -> tuple[float, np.ndarray]:
            bias = theta[1:] if self.binary else np.concatenate([[0.0], theta[1:]])
            return math.exp(theta[0]), bias

        def loss(theta: np.ndarray) -> float:
            t, bias = unpack(theta)
            return _nll(z / t + (bias[0] if self.binary else bias), y, w, self.binary)

        free = 1 if self.binary else z.shape[1] - 1
        bounds = [tuple(math.log(b) for b in TEMPERATURE_BOUNDS)] + [BIAS_BOUNDS] * free
        result = minimize(loss, np.zeros(1 + free), method="L-BFGS-B", bounds=bounds)
        self.temperature_, self.bias_ = unpack(result.x)
        self.n_classes_ = None if self.binary else int(z.shape[1])
        return self

    def calibrated_logits(self, logits: Any) -> np.ndarray:
        """logits / T + b (binary: calibrated logit; categorical: shifted scaled logits)."""
        z = _predict_logits(self, logits) / self.temperature_
        return z + (self.bias_[0] if self.binary else self.bias_)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serialisable data (see `from_dict`)."""
        return {**super().to_dict(), "bias": [float(b) for b in self.bias_]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AffineScaler:
        """A fitted scaler from `to_dict` output; QualauditError when the data is malformed."""
        self = super().from_dict(data)
        bias = _field(data, "bias", list)
        expected = 1 if self.binary else self.n_classes_
        if len(bias) != expected or not all(_finite_number(b) for b in bias):
            raise QualauditError(f"field 'bias': expected {expected} finite number(s) (one per "
                                 f"class); found {bias!r}")
        self.bias_ = np.asarray(bias, dtype=np.float64)
        return self


class IsotonicCalibrator:
    """A monotone, piecewise-linear map from uncalibrated to calibrated probability.

    More flexible than a temperature (it can fix any monotone distortion) but needs more
    data (a few hundred items per class at least). Binary: one isotonic regression on the
    sigmoid probability. Categorical: one-vs-rest per class on the softmax probabilities,
    then rows renormalised to sum to 1 (a row mapped to all zeros keeps its uncalibrated
    softmax). Targets may be hard or soft; ties and item order do not matter.

    Args:
        binary: True for a binary head (logits (N,)); False for categorical (logits (..., K)).
    """

    method = "isotonic"

    def __init__(self, binary: bool = False) -> None:
        self.binary = binary

    def __repr__(self) -> str:
        fitted = ", fitted" if hasattr(self, "X_thresholds_") else ""
        return f"{type(self).__name__}(binary={self.binary}{fitted})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "X_thresholds_"):
            raise _not_fitted(type(self).__name__)

    def fit(self, logits: Any, targets: Any, sample_weight: Any = None) -> IsotonicCalibrator:
        """Learn `X_thresholds_` / `y_thresholds_` (one array per class; one for binary).

        Arguments as for `TemperatureScaler.fit`.
        """
        z, y, w = _fit_arrays(logits, targets, sample_weight, self.binary)
        if self.binary:
            probs, outcomes = sigmoid(z)[:, None], y[:, None]
        else:
            probs, outcomes = softmax(z), y
        x_thresholds, y_thresholds = [], []
        for k in range(probs.shape[1]):
            regression = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            regression.fit(probs[:, k], outcomes[:, k], sample_weight=w)
            x_thresholds.append(np.asarray(regression.X_thresholds_, dtype=np.float64))
            y_thresholds.append(np.asarray(regression.y_thresholds_, dtype=np.float64))
        self.X_thresholds_ = x_thresholds
        self.y_thresholds_ = y_thresholds
        self.n_classes_ = None if self.binary else int(probs.shape[1])
        return self

    def predict_proba(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities, same shape as `logits` (binary: P(positive))."""
        z = _predict_logits(self, logits)
        if self.binary:
            mapped = np.interp(sigmoid(z).ravel(), self.X_thresholds_[0], self.y_thresholds_[0])
            return mapped.reshape(z.shape)
        probs = softmax(z).reshape(-1, self.n_classes_)
        mapped = np.stack([np.interp(probs[:, k], self.X_thresholds_[k], self.y_thresholds_[k])
                           for k in range(self.n_classes_)], axis=1)
        sums = mapped.sum(axis=1, keepdims=True)
        empty = sums[:, 0] <= 1e-12
        mapped[empty] = probs[empty]
        sums[empty] = 1.0
        return (mapped / sums).reshape(z.shape)

    def calibrated_logits(self, logits: Any) -> np.ndarray:
        """Binary: log-odds of the calibrated probability; categorical: log of the calibrated
        probabilities. Probabilities are clipped to [1e-6, 1 - 1e-6] so results are finite."""
        probs = self.predict_proba(logits)
        if self.binary:
            return logit(probs)
        return np.log(np.clip(probs, LOGIT_CLIP, 1 - LOGIT_CLIP))

    def to_dict(self) -> dict[str, Any]:
        """The fitted thresholds as JSON-serialisable lists (see `from_dict`)."""
        self._check_fitted()
        return {"method": self.method, "binary": bool(self.binary), "n_classes": self.n_classes_,
                "x_thresholds": [x.tolist() for x in self.X_thresholds_],
                "y_thresholds": [y.tolist() for y in self.y_thresholds_]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicCalibrator:
        """A fitted calibrator from `to_dict` output; QualauditError when the data is malformed."""
        binary, n_classes = _header(data, cls.method)
        expected = 1 if binary else n_classes
        tables = []
        for key in ("x_thresholds", "y_thresholds"):
            lists = _field(data, key, list)
            if len(lists) != expected:
                raise QualauditError(f"field {key!r}: expected {expected} list(s) (one per "
                                     f"class); found {len(lists)}")
            try:
                arrays = [np.asarray(values, dtype=np.float64) for values in lists]
            except (TypeError, ValueError) as exc:
                raise QualauditError(f"field {key!r}: expected lists of numbers ({exc})") from exc
            tables.append(arrays)
        for k, (x, y) in enumerate(zip(*tables, strict=True)):
            if x.ndim != 1 or x.shape != y.shape or x.size == 0:
                raise QualauditError(f"class {k}: x_thresholds and y_thresholds must be equally "
                                     f"long, non-empty lists; found {x.shape} and {y.shape}")
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(np.diff(x) < 0) \
                    or y.min() < 0 or y.max() > 1:
                raise QualauditError(f"class {k}: thresholds must be finite, x non-decreasing "
                                     "and y in [0, 1]")
        self = cls(binary=binary)
        self.X_thresholds_, self.y_thresholds_ = tables
        self.n_classes_ = n_classes
        return self


Calibrator = TemperatureScaler | AffineScaler | IsotonicCalibrator
CALIBRATORS: dict[str, type[TemperatureScaler] | type[IsotonicCalibrator]] = {
    TemperatureScaler.method: TemperatureScaler,
    AffineScaler.method: AffineScaler,
    IsotonicCalibrator.method: IsotonicCalibrator,
}


# -------------------------------------------------------------------------- the mapping
class Calibration(MutableMapping[str, Calibrator]):
    """Head name -> fitted calibrator; heads without one get the plain sigmoid/softmax.

    Saved next to the model as calibration.json (see the module docstring for the format).

    Example:
        >>> calibration = Calibration()
        >>> calibration["escalation.v1"] = TemperatureScaler(binary=True).fit(z, y)  # doctest: +SKIP
        >>> calibration.predict_proba("escalation.v1", logits, binary=True)  # doctest: +SKIP
    """

    def __init__(self, calibrators: dict[str, Calibrator] | None = None) -> None:
        self._calibrators: dict[str, Calibrator] = {}
        for head, calibrator in (calibrators or {}).items():
            self[head] = calibrator

    # Mapping protocol
    def __getitem__(self, head: str) -> Calibrator:
        return self._calibrators[head]

    def __setitem__(self, head: str, calibrator: Calibrator) -> None:
        if not isinstance(head, str) or not head:
            raise TypeError(f"head names are non-empty strings; found {head!r}")
        if not isinstance(calibrator, (TemperatureScaler, IsotonicCalibrator)):  # affine too
            raise TypeError(f"head {head!r}: expected a TemperatureScaler, AffineScaler or "
                            f"IsotonicCalibrator; found {type(calibrator).__name__}")
        self._calibrators[head] = calibrator

    def __delitem__(self, head: str) -> None:
        del self._calibrators[head]

    def __iter__(self) -> Iterator[str]:
        return iter(self._calibrators)

    def __len__(self) -> int:
        return len(self._calibrators)

    def __repr__(self) -> str:
        return f"Calibration({self._calibrators!r})"

    def is_calibrated(self, head: str) -> bool:
        """Whether `head` has a calibrator (otherwise it gets plain sigmoid/softmax)."""
        return head in self._calibrators

    def _calibrator(self, head: str, binary: bool) -> Calibrator | None:
        calibrator = self._calibrators.get(head)
        if calibrator is not None and bool(calibrator.binary) != bool(binary):
            raise QualauditError(
                f"head {head!r}: its calibrator was fitted for {_kind(calibrator.binary)} logits, "
                f"but {_kind(binary)} logits were passed (binary={binary}). The calibration does "
                "not belong to this model's heads; refit it")
        return calibrator

    def predict_proba(self, head: str, logits: Any, binary: bool) -> np.ndarray:
        """Probabilities for `head`: calibrated when it has a calibrator, else sigmoid
        (binary) or softmax over the last axis (categorical). Same shape as `logits`."""
        calibrator = self._calibrator(head, binary)
        if calibrator is not None:
            return calibrator.predict_proba(logits)
        z = np.asarray(logits, dtype=np.float64)
        return sigmoid(z) if binary else softmax(_check_categorical(z))

    def calibrated_logits(self, head: str, logits: Any, binary: bool) -> np.ndarray:
        """Calibrated logits for `head` (the logits unchanged, as float64, without a calibrator)."""
        calibrator = self._calibrator(head, binary)
        if calibrator is not None:
            return calibrator.calibrated_logits(logits)
        z = np.asarray(logits, dtype=np.float64)
        return z if binary else _check_categorical(z)

    # Saving and loading
    def to_dict(self) -> dict[str, Any]:
        """`{"format": 1, "heads": {head: calibrator.to_dict()}}`, JSON-serialisable."""
        heads = {}
        for head, calibrator in self._calibrators.items():
            try:
                heads[head] = calibrator.to_dict()
            except NotFittedError as exc:
                raise NotFittedError(f"head {head!r}: {exc}") from exc
        return {"format": FORMAT_VERSION, "heads": heads}

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> Calibration:
        """A Calibration from `to_dict` output. Unknown formats and methods, and malformed
        heads, raise QualauditError naming `source` (e.g. the file) and the head."""
        where = source or "calibration data"
        if not isinstance(data, dict) or "format" not in data:
            raise QualauditError(f"{where}: expected a JSON object with 'format' and 'heads'; "
                                 f"found {type(data).__name__}")
        if data["format"] != FORMAT_VERSION:
            raise QualauditError(
                f"{where}: unknown calibration format {data['format']!r}; this qualaudit "
                f"version reads format {FORMAT_VERSION}. Upgrade qualaudit "
                "(pip install -U qualaudit) or refit the calibration")
        heads = data.get("heads")
        if not isinstance(heads, dict):
            raise QualauditError(f"{where}: 'heads' must be an object of head name -> "
                                 f"calibrator; found {type(heads).__name__}")
        calibrators: dict[str, Calibrator] = {}
        for head, entry in heads.items():
            method = entry.get("method") if isinstance(entry, dict) else None
            if method not in CALIBRATORS:
                raise QualauditError(
                    f"{where}: head {head!r}: unknown calibration method {method!r}; this "
                    f"qualaudit knows {sorted(CALIBRATORS)}. A newer qualaudit may know it "
                    "(pip install -U qualaudit), or refit the calibration")
            try:
                calibrators[head] = CALIBRATORS[method].from_dict(entry)
            except QualauditError as exc:
                raise QualauditError(f"{where}: head {head!r}: {exc}") from exc
        return cls(calibrators)

    def save(self, path: str | Path) -> Path:
        """Write calibration.json to `path` (a file, or a directory to write it into); returns
        the file's path. Heads without a calibrator are simply absent."""
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILENAME
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, missing_ok: bool = False) -> Calibration:
        """Read calibration.json from `path` (a file, or a directory holding it).

        A missing file is an error unless `missing_ok=True`, which returns an empty
        Calibration (every head uncalibrated).
        """
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILENAME
        if not path.is_file():
            if missing_ok:
                return cls()
            raise QualauditError(f"{path}: calibration file not found; pass missing_ok=True to "
                                 "use uncalibrated probabilities")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise QualauditError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))

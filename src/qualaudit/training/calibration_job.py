"""The calibration job: fit a model's per-head calibration on labelled examples (the dev split
of the public data, or a user's own labels), reporting ECE before and after.

Calibrators are fitted on raw logits of labelled items only: a turn head on the turns its
source labels, a categorical head on the rows (mechanisms) that carry a label; soft labels
(annotator shares) are fitted as probabilities.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..calibration import AffineScaler, IsotonicCalibrator, TemperatureScaler, sigmoid, softmax
from ..errors import QualauditError
from ..metrics import expected_calibration_error
from ..model import QualityModel
from .batches import batches, forward, prepare, stack_labels, window_builder
from .datasets import Example

METHODS = {"temperature": TemperatureScaler, "affine": AffineScaler, "isotonic": IsotonicCalibrator}


@dataclass
class HeadCalibration:
    head: str
    n: int
    method: str
    ece_before: float
    ece_after: float


@torch.no_grad()
def labelled_logits(model: QualityModel, examples: list[Example], batch_tokens: int = 8192
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{head name: (raw logits, targets)} over the labelled items of `examples`: binary
    heads flattened to (M,), categorical heads to (M, K)."""
    model.eval()
    items = prepare(examples, window_builder(model), max_turns=None)
    collected: dict[str, tuple[list, list]] = {s.name: ([], []) for s in model.specs}
    for batch in batches(items, batch_tokens, random.Random(0)):
        output = forward(model, batch, batch_tokens)
        logits_of = {"conversation": output.conversation_logits}
        labels = stack_labels(batch, model.specs)
        for s in model.specs:
            level = logits_of.get(s.level, output.turn_logits)
            logits = level[s.name].float().cpu()
            target, weight = labels[s.name]
            k = 1 if s.binary else s.shape[-1]
            z, y, w = (x.reshape(-1, k).numpy() for x in (logits, target, weight))
            keep = w[:, 0] > 0
            collected[s.name][0].append(z[keep])
            collected[s.name][1].append(y[keep])
    out = {}
    for s in model.specs:
        z, y = (np.concatenate(x) for x in collected[s.name])
        if len(z):
            out[s.name] = (z[:, 0], y[:, 0]) if s.binary else (z, y)
    return out


def fit_calibration(model: QualityModel, examples: list[Example], method: str = "temperature",
                    heads: list[str] | None = None) -> list[HeadCalibration]:
    """Fit a calibrator per head on the labelled items of `examples` and install it in
    `model.calibration` (other heads keep theirs); ECE before (raw sigmoid/softmax) and
    after, on the same items. `heads` names the targets to fit (None: every labelled one,
    a head with fewer than 20 labelled items being left alone). A named target the model
    lacks is a ValueError; one with fewer than 20 labelled items a QualauditError; either
    way nothing is installed."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, found {method!r}")
    by_target = {s.target: s for s in model.specs}
    unknown = [h for h in heads or [] if h not in by_target]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not among the targets of {model.config.name}: "
                         f"{', '.join(by_target)}")
    named = None if heads is None else {by_target[h].name for h in heads}
    binary = {s.name: s.binary for s in model.specs}
    fitted = {head: (z, y) for head, (z, y) in labelled_logits(model, examples).items()
              if (named is None or head in named) and len(z) >= 20}
    too_few = [h for h in heads or [] if by_target[h].name not in fitted]
    if too_few:
        raise QualauditError(f"{', '.join(too_few)} had fewer than 20 labelled items; "
                             "nothing was calibrated")
    report = []
    for head, (z, y) in fitted.items():
        calibrator = METHODS[method](binary=binary[head]).fit(z, y)
        before = sigmoid(z) if binary[head] else softmax(z)
        model.calibration[head] = calibrator
        after = calibrator.predict_proba(z)
        report.append(HeadCalibration(head, len(z), method, expected_calibration_error(before, y),
                                      expected_calibration_error(after, y)))
    return report

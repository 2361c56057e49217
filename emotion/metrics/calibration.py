"""Calibration: does a probability of 0.9 mean right 90% of the time, and temperature scaling
(Guo et al., 2017) to make it so.

- fit_temperature: the one scalar T > 0 that minimises the mean cross-entropy of
  softmax(logits / T) on a held-out split (the pipeline uses validation; never test). Found by
  SciPy's bounded scalar minimiser (Brent's method) over log T in [log 0.05, log 20], so T is
  positive and bounded; T > 1 softens an over-confident model, T < 1 sharpens. Every label is
  unchanged (argmax of logits / T is argmax of logits). T is kept to 3 decimals: at the
  minimum the loss is flat (half a step, 5e-4, changes it by about 1e-7), and the float
  noise of the logits (another batch size, another machine) then leaves T as it was.
- expected_calibration_error: the top probability of each example binned into 15
  equal-width bins of [0, 1] ((0, 1/15], (1/15, 2/15], ...); ECE = sum over bins of
  (examples in bin / all examples) x |accuracy in bin - mean top probability in bin|.
- reliability and risk_coverage: the rows of the reliability diagram and of the
  risk-coverage curve (accuracy of the labels kept as the probability threshold rises).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from emotion.metrics.scores import loss_and_accuracy

TEMPERATURE_BOUNDS = (0.05, 20.0)
ECE_BINS = 15


def cross_entropy(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / temperature) against integer labels."""
    return loss_and_accuracy(logits.astype(np.float64) / temperature, labels)[0]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in TEMPERATURE_BOUNDS that minimises cross_entropy, to 3 decimals."""
    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: cross_entropy(logits, labels, math.exp(log_t)),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-7})
    return round(math.exp(result.x), 3)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature), float64."""
    return softmax(logits.astype(np.float64) / temperature, axis=1)


def _bins(probabilities: np.ndarray, labels: np.ndarray, bins: int):
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return confidence, correct, index


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE of the top probability over `bins` equal-width bins (see the module docstring)."""
    confidence, correct, index = _bins(probabilities, labels, bins)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def reliability(probabilities: np.ndarray, labels: np.ndarray,
                bins: int = ECE_BINS) -> list[dict]:
    """One row per non-empty bin: its range, mean top probability, accuracy and size."""
    confidence, correct, index = _bins(probabilities, labels, bins)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append({"bin_low": round(b / bins, 6), "bin_high": round((b + 1) / bins, 6),
                         "confidence": round(float(confidence[members].mean()), 6),
                         "accuracy": round(float(correct[members].mean()), 6),
                         "count": int(members.sum())})
    return rows


def risk_coverage(probabilities: np.ndarray, labels: np.ndarray, points: int = 100
                  ) -> list[dict]:
    """The most confident share of the examples kept (coverage 1/points, 2/points, ..., 1):
    each row's accuracy of the kept labels and the threshold that keeps them (the lowest
    top probability among them)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    cumulative = np.cumsum(correct[order])
    rows = []
    for point in range(1, points + 1):
        kept = max(1, math.ceil(point * len(labels) / points))
        rows.append({"coverage": round(kept / len(labels), 6),
                     "accuracy": round(float(cumulative[kept - 1] / kept), 6),
                     "threshold": round(float(confidence[order[kept - 1]]), 6)})
    return rows


def at_threshold(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Coverage and accuracy of the labels whose top probability is at least `threshold`
    (what `emotion-predict --min-prob` keeps); only the coverage (0) when none is kept."""
    confidence = probabilities.max(axis=1)
    kept = confidence >= threshold
    correct = probabilities.argmax(axis=1) == labels
    if not kept.any():  # no accuracy to give (and DVC's metrics drop nulls)
        return {"coverage": 0.0}
    return {"coverage": round(float(kept.mean()), 6),
            "accuracy": round(float(correct[kept].mean()), 6)}

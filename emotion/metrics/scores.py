"""The scores a split is reported with: accuracy, loss, macro and weighted F1 of logits."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import f1_score


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy of softmax(logits) against integer labels, and accuracy."""
    log_probabilities = log_softmax(logits.astype(np.float64), axis=1)
    loss = -log_probabilities[np.arange(len(labels)), labels].mean()
    return float(loss), float((logits.argmax(axis=1) == labels).mean())


def split_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, mean cross-entropy, macro-F1 and weighted F1 against integer labels, rounded
    to 6 decimals (the metrics files' precision)."""
    predicted = logits.argmax(axis=1)
    loss, accuracy = loss_and_accuracy(logits, labels)
    return {
        "accuracy": round(accuracy, 6),
        "loss": round(loss, 6),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 6),
        "weighted_f1": round(float(f1_score(labels, predicted, average="weighted")), 6),
    }

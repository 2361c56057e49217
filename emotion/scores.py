"""The scores a split is reported with: accuracy, loss, macro and weighted F1 of logits."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from emotion.inference import loss_and_accuracy


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

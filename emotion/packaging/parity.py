"""How far a published graph is from the model it was made from: token ids and predictions,
as the export and onnx stages measure them (metrics/export.json, metrics/onnx.json)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def token_parity(texts: dict[str, list[str]], expected: Callable[[list[str]], Sequence],
                 actual: Callable[[list[str]], Sequence]) -> dict[str, int]:
    """Of every split's texts, how many `actual` encodes otherwise than `expected` (each
    gives one row per text)."""
    mismatches = sum(a != b for split in texts.values()
                     for a, b in zip(expected(split), actual(split)))
    return {"texts": sum(map(len, texts.values())), "mismatches": mismatches}


def prediction_parity(labels: Sequence[str], probabilities: np.ndarray,
                      reference_labels: Sequence[str], reference_probabilities: np.ndarray
                      ) -> dict[str, float]:
    """Labels that differ from the reference's, and the largest probability difference."""
    return {"label_mismatches": sum(a != b for a, b in zip(labels, reference_labels)),
            "max_probability_difference": float(
                np.abs(probabilities - reference_probabilities).max())}

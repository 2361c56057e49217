"""Prediction: labels and probabilities of raw text, from one of two backends behind one
TextClassifier:
- onnx (the default): the ONNX runtime folder written by the onnx stage (models/onnx),
  run with onnxruntime; needs neither TensorFlow nor transformers (emotion.prediction.onnx_backend);
- tensorflow: the published model folder itself (models/emotion, calibrated by stage
  package; emotion.tensorflow_backend).
Both encode text exactly as training did (the model's own tokenizer and max_length)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError
from emotion.paths import MODEL_DIR, ONNX_DIR

BACKENDS = ("onnx", "tensorflow")
DEFAULT_BATCH_SIZE = 64  # texts per forward pass


@dataclass
class Predictions:
    """Per text (rows): the logits, and whether the text was cut at max_length."""

    labels: list[str]
    logits: np.ndarray
    truncated: list[bool]

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, one row per text, columns in the order of `labels`."""
        logits = self.logits.astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def top(self, min_prob: float | None = None) -> list[str | None]:
        """The most probable label of each text; None where its probability is below
        `min_prob` (an uncertain text, e.g. for a person to label)."""
        best = self.logits.argmax(axis=1)
        if min_prob is None:
            return [self.labels[i] for i in best]
        confident = self.probabilities.max(axis=1) >= min_prob
        return [self.labels[i] if keep else None for i, keep in zip(best, confident)]


class TextClassifier:
    """A trained model, ready to label raw text exactly as the pipeline encodes it."""

    def __init__(self, folder: str | Path | None = None, backend: str = "onnx",
                 batch_size: int = DEFAULT_BATCH_SIZE, *, variant: str | None = None,
                 graph: bool = True, threads: int = 0):
        """folder: the backend's folder; None: models/onnx (onnx), checked against the
        trained model in models/emotion when that is there, or models/emotion (tensorflow).
        variant (onnx): float32 or int8, None for the folder's default. graph (tensorflow):
        trace the forward pass once (see TensorFlowBackend). threads (onnx): onnxruntime's
        intra-op threads, 0 for one per physical core."""
        if backend == "onnx":
            from emotion.prediction.onnx_backend import OnnxBackend

            self.backend = OnnxBackend(folder or ONNX_DIR, batch_size, variant, threads)
            if folder is None and (MODEL_DIR / "config.json").is_file():  # converted from it
                self.backend.check_against(MODEL_DIR)
        elif backend == "tensorflow":
            from emotion.tensorflow_backend import TensorFlowBackend

            self.backend = TensorFlowBackend(folder or MODEL_DIR, batch_size, graph)
        else:
            raise PipelineError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
        self.labels, self.max_length = self.backend.labels, self.backend.max_length

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text as the model sees them (cut at max_length, as in training),
        and whether each was cut."""
        return self.backend.encode(texts)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Logits (and so probabilities and labels) of each text, encoded as in training."""
        if not texts:
            return Predictions(self.labels, np.zeros((0, len(self.labels)), np.float32), [])
        ids, truncated = self.encode(texts)
        return Predictions(self.labels, self.backend.logits(ids), truncated)

"""Prediction: labels and probabilities of raw text, from one of two backends behind one
TextClassifier:
- onnx (the default): the ONNX runtime folder written by the onnx stage (models/onnx), run
  on the runtime emotion.prediction.runtime_choice picks (ONNX Runtime, or OpenVINO in
  bfloat16 where installed, able and measured as accurate); needs neither TensorFlow nor
  transformers (emotion.prediction.runtime_folder);
- tensorflow: the published model folder itself (models/emotion, calibrated by stage
  package; emotion.tensorflow_backend).
Both encode text exactly as training did (the model's own tokenizer and max_length)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError
from emotion.paths import MODEL_DIR, ONNX_DIR
from emotion.prediction.backend import DEFAULT_BATCH_SIZE, Backend, Predictions
from emotion.prediction.runtime_choice import choose_runtime
from emotion.prediction.runtime_settings import RUNTIMES, RuntimeSettings

__all__ = ["BACKENDS", "DEFAULT_BATCH_SIZE", "Predictions", "TextClassifier"]
BACKENDS = ("onnx", "tensorflow")


class TextClassifier:
    """A trained model, ready to label raw text exactly as the pipeline encodes it."""

    def __init__(self, folder: str | Path | None = None, backend: str = "onnx",
                 batch_size: int = DEFAULT_BATCH_SIZE, *, runtime: str | None = None,
                 graph: bool = True, threads: int = 0):
        """folder: the backend's folder; None: models/onnx (onnx), checked against the
        trained model in models/emotion when that is there, or models/emotion (tensorflow).
        runtime (onnx): one of RUNTIMES, None for the choice rule of runtime_choice (the
        reason is in `why`). graph (tensorflow): trace the forward pass once (see
        TensorFlowBackend). threads (onnx): the engine's threads, 0 for one per physical
        core."""
        if backend == "onnx":
            converted_here = folder is None  # from models/emotion, when that is there
            folder = Path(folder or ONNX_DIR)
            runtime, self.why = choose_runtime(RuntimeSettings.read(folder), runtime)
            if RUNTIMES[runtime].engine == "openvino":
                from emotion.prediction.openvino_backend import OpenVinoBackend as Engine
            else:
                from emotion.prediction.onnx_backend import OnnxBackend as Engine
            self.backend: Backend = Engine(folder, runtime, batch_size, threads)
            if converted_here and (MODEL_DIR / "config.json").is_file():
                self.backend.check_against(MODEL_DIR)
        elif backend == "tensorflow":
            from emotion.tensorflow_backend import TensorFlowBackend

            if runtime not in (None, TensorFlowBackend.runtime):
                raise PipelineError(f"runtime {runtime!r} goes with the onnx backend")
            self.backend, self.why = TensorFlowBackend(folder or MODEL_DIR, batch_size,
                                                       graph), "the tensorflow backend"
        else:
            raise PipelineError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
        self.labels, self.max_length = self.backend.labels, self.backend.max_length

    @classmethod
    def of(cls, backend: Backend) -> TextClassifier:
        """The classifier of a backend already loaded (e.g. the TensorFlow model that a
        stage also exports)."""
        classifier = cls.__new__(cls)
        classifier.backend, classifier.why = backend, "given"
        classifier.labels, classifier.max_length = backend.labels, backend.max_length
        return classifier

    @property
    def runtime(self) -> str:
        """What computes: a name of RUNTIMES (engine and precision), or tensorflow."""
        return self.backend.runtime

    @property
    def batch_size(self) -> int:
        """Texts a forward pass: the batch size asked for, or 1 where the backend runs one
        text at a time (an int8 graph whose scores would depend on the batch on this CPU)."""
        return self.backend.batch_size if self.backend.batches else 1

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

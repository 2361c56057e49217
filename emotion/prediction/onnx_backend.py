"""The light prediction engine: an ONNX runtime folder (emotion.prediction.runtime_folder)
run with onnxruntime and the `tokenizers` library. It imports neither TensorFlow nor
transformers, so it starts in a fraction of a second and installs without the training stack
(requirements-predict.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.errors import PipelineError, first_line
from emotion.prediction.runtime_folder import RuntimeFolderBackend
from emotion.prediction.runtime_settings import REBUILD


class OnnxBackend(RuntimeFolderBackend):
    """An ONNX runtime folder's float32 or int8 graph on ONNX Runtime."""

    engine = "onnxruntime"

    def load(self, path: Path, precision: str, threads: int) -> int | None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: no warnings on stderr
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for damaged files
            raise PipelineError(f"{path}: cannot load the ONNX model ({first_line(error)}): "
                                f"{REBUILD}") from None
        return self.session.get_outputs()[0].shape[-1]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids,
                                       "attention_mask": attention_mask})[0]

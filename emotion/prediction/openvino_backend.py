"""The OpenVINO engine (the `openvino` extra): an ONNX runtime folder's fused float32 graph
(emotion.prediction.runtime_folder) read by OpenVINO's ONNX frontend and compiled for this
CPU in float32 or bfloat16. bfloat16 runs the matmuls on AVX512_BF16 or AMX units, about
twice float32's texts/s (docs/performance.md); the onnx stage measures whether its scores are
as accurate as the default's (emotion.prediction.runtime_choice decides whether it runs)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError, first_line
from emotion.prediction.runtime_folder import RuntimeFolderBackend
from emotion.prediction.runtime_settings import REBUILD

PRECISION_HINTS = {"float32": "f32", "bf16": "bf16"}  # OpenVINO's INFERENCE_PRECISION_HINT


def without_telemetry() -> None:
    """OpenVINO's ONNX frontend reports usage to Intel from every process that reads a model
    (openvino_telemetry, on unless a user opted out; it forks a sender process and writes
    ~/intel/): a library must not do that for its users, so the module is made unimportable
    for this process, unless something imported it already."""
    sys.modules.setdefault("openvino_telemetry", None)


class OpenVinoBackend(RuntimeFolderBackend):
    """An ONNX runtime folder's float32 graph on OpenVINO's CPU plugin."""

    engine = "openvino"

    def load(self, path: Path, precision: str, threads: int) -> int | None:
        without_telemetry()
        import openvino

        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = openvino.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError for any unreadable graph
            raise PipelineError(f"{path}: OpenVINO cannot load the ONNX model "
                                f"({first_line(error)}): {REBUILD}") from None
        computes = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if computes != PRECISION_HINTS[precision]:  # the plugin chose otherwise on this CPU
            raise PipelineError(f"{path}: OpenVINO compiled it in {computes}, not "
                                f"{PRECISION_HINTS[precision]}, on this CPU")
        self._requests = threading.local()  # an infer request per thread: safe to share
        shape = self.compiled.output(0).get_partial_shape()[-1]
        return shape.get_length() if shape.is_static else None

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        outputs = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(outputs[self.compiled.output(0)])

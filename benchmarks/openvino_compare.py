"""OpenVINO's runtime against ONNX Runtime on the trained model (issue #36's question: does
it beat ONNX Runtime here?, and which graph should it read?). OpenVINO runs the
standard-op graph (emotion.packaging.onnx_graph.convert of models/emotion, converted here) and
the runtime folder's fused float32 graph (its ONNX frontend implements ONNX Runtime's fused
operators); ONNX Runtime runs the standard-op graph and the fused float32 and int8 graphs.
For each: texts/s on the test split (length-sorted batches of 64, graph only), one-text
latency (median of 200), and the largest probability difference from ONNX Runtime's
standard graph. OpenVINO runs in f32 (its CPU plugin may otherwise compute in bf16 on
AVX512_BF16 or AMX CPUs) and with its default precision hint. Figures, not assertions.

Usage (after `dvc repro publish`; OpenVINO in a virtualenv of its own, see docs/performance.md):
    python -m benchmarks.openvino_compare
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":
    start_tensorflow()

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.packaging.onnx_graph import convert
from emotion.paths import MODEL_DIR, ONNX_DIR, RAW_DIR
from emotion.prediction.backend import Predictions, padded_batches
from emotion.prediction.onnx_backend import OnnxBackend
from emotion.prediction.openvino_backend import without_telemetry
from emotion.tensorflow_backend import TensorFlowBackend


def measure(run, ids: list[list[int]], labels: int, pad_id: int
            ) -> tuple[float, float, np.ndarray]:
    """texts/s in batches of 64, median one-text ms, and the logits."""
    logits = np.empty((len(ids), labels), np.float32)
    for _, tokens, mask in padded_batches(ids[:64], 64, pad_id):  # warm-up
        run(tokens, mask)
    start = time.perf_counter()
    for rows, tokens, mask in padded_batches(ids, 64, pad_id):
        logits[rows] = run(tokens, mask)
    rate = len(ids) / (time.perf_counter() - start)
    times = []
    for _, tokens, mask in list(padded_batches(ids, 1, pad_id))[:220]:
        began = time.perf_counter()
        run(tokens, mask)
        times.append((time.perf_counter() - began) * 1000)
    return rate, statistics.median(times[20:]), logits


def main() -> None:
    import onnxruntime

    without_telemetry()
    import openvino

    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}]; onnxruntime "
          f"{onnxruntime.__version__}, OpenVINO {openvino.__version__}")
    texts = list(read_split(RAW_DIR, "test")["text"])
    runtime = OnnxBackend(ONNX_DIR, "onnxruntime-float32", 64)
    ids, _ = runtime.encode(texts)
    with tempfile.TemporaryDirectory() as scratch:
        standard = Path(scratch) / "standard.onnx"
        convert(TensorFlowBackend(MODEL_DIR).model, standard)
        runs = {}
        for name, path in (("ONNX Runtime, standard-op float32", standard),
                           ("ONNX Runtime, fused float32", ONNX_DIR / "model.onnx"),
                           ("ONNX Runtime, fused int8", ONNX_DIR / "model.int8.onnx")):
            session = onnxruntime.InferenceSession(str(path),
                                                   providers=["CPUExecutionProvider"])
            runs[name] = lambda tokens, mask, s=session: s.run(
                None, {"input_ids": tokens, "attention_mask": mask})[0]
        core = openvino.Core()
        for name, graph, config in (
                ("OpenVINO, standard-op, f32", standard, {"INFERENCE_PRECISION_HINT": "f32"}),
                ("OpenVINO, standard-op, its default precision", standard, {}),
                ("OpenVINO, fused, f32", ONNX_DIR / "model.onnx",
                 {"INFERENCE_PRECISION_HINT": "f32"}),
                ("OpenVINO, fused, its default precision", ONNX_DIR / "model.onnx", {})):
            compiled = core.compile_model(core.read_model(str(graph)), "CPU", config)
            runs[name] = lambda tokens, mask, c=compiled: c(
                {"input_ids": tokens, "attention_mask": mask})[0]
        reference = None
        print(f"{'runtime and graph':<46} {'texts/s':>8} {'one text ms':>12} "
              f"{'max prob diff':>14}")
        for name, run in runs.items():
            rate, latency, logits = measure(run, ids, len(runtime.labels), runtime.pad_id)
            scores = Predictions(runtime.labels, logits, []).probabilities
            if reference is None:
                reference = scores
            difference = np.abs(scores - reference).max()
            print(f"{name:<46} {rate:8.1f} {latency:12.2f} {difference:14.2e}", flush=True)


if __name__ == "__main__":
    main()

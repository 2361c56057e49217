"""Prediction-speed benchmark of the trained model, every path side by side in one run:
- TF Python path: emotion.predict's tensorflow backend (models/emotion), chunks of 1,024
  texts sorted by length into batches, as `emotion-predict --backend tensorflow` runs it;
- SavedModel (models/serving): requests of one batch each, in test-set order, as a server
  would get them;
- every runtime of the ONNX runtime folder (models/onnx) that can run here: ONNX Runtime
  float32 and int8, OpenVINO float32 and bfloat16 (the `openvino` extra; bf16 on CPUs with
  AVX512_BF16 or AMX), as `emotion-predict --runtime NAME` runs it (padding-bounded batches),
  and the default, whichever runtime the folder's rule picks here.

For each: the cold start of the real command (process start to exit, labelling one text;
for the SavedModel a plain Python process that loads it), the single-text latency (median and
p95 over repeated calls after warm-up), batch throughput on the test split, and the useful
FLOP/s (unpadded tokens; 2 x parameters per token + attention) as a share of this machine's
dense float32 matmul limit, measured first in the same run (the fastest float32 figure of
benchmarks.matmul's references: TensorFlow with and without oneDNN, NumPy's BLAS). Every
TensorFlow path runs with the pipeline's own settings (emotion.process). Figures, not
assertions; the CPU model and flags are printed first.

Usage (from the repo root, after `dvc repro`): python -m benchmarks.predict_speed
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":
    start_tensorflow()

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SavedModel's tokenizer ops)

from benchmarks.matmul import references
from benchmarks.train_speed import flops_counter
from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.paths import MODEL_DIR, RAW_DIR, SERVING_DIR
from emotion.prediction.classifier import DEFAULT_BATCH_SIZE, TextClassifier
from emotion.prediction.cli import CHUNK
from emotion.prediction.runtime_choice import cannot_run
from emotion.prediction.runtime_settings import RUNTIMES

COMMAND = shutil.which("emotion-predict", path=str(Path(sys.executable).parent))
SAVED_MODEL_COLD = ("import sys; from emotion.process import start_tensorflow; "
                    "tf = start_tensorflow(); import tensorflow_text; "
                    "model = tf.saved_model.load(sys.argv[1]); "
                    "print(model.signatures['serving_default'](text=tf.constant([sys.argv[2]]))"
                    "['label'].numpy())")


def throughput(predict, texts: list[str], request_size: int) -> float:
    """Texts per second over all `texts`, in requests of `request_size` (after warm-up)."""
    predict(texts[:request_size])
    start = time.perf_counter()
    for begin in range(0, len(texts), request_size):
        predict(texts[begin:begin + request_size])
    return len(texts) / (time.perf_counter() - start)


def latency(predict, texts: list[str], calls: int) -> tuple[float, float]:
    """Median and p95 milliseconds of one-text calls (after 20 warm-up calls)."""
    for text in texts[:20]:
        predict([text])
    times = []
    for text in texts[20:20 + calls]:
        start = time.perf_counter()
        predict([text])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def cold_start(command: list[str], runs: int) -> list[float]:
    """Seconds from process start to exit, `runs` times."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--calls", type=int, default=200, help="single-text calls timed")
    parser.add_argument("--starts", type=int, default=5, help="cold starts timed per path")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}]; TF {tf.__version__}")
    rows = references()
    peak = max(rows["limit float32"].values()) * 1e9
    print(f"float32 matmul limit: {peak / 1e9:.1f} GFLOP/s (fastest of " + ", ".join(
        f"{name} {max(row['square'], row['step_shapes']):.1f}" for name, row in rows.items()
        if "float32" in name and not name.startswith("limit")) + ")")

    texts = list(read_split(RAW_DIR, "test")["text"])
    trained = TextClassifier(MODEL_DIR, "tensorflow", args.batch_size)
    lengths = [len(ids) for ids in trained.backend.encode(texts)[0]]
    forward_flops = flops_counter(trained.backend.model)
    split_flops = sum(forward_flops(1, length) / 3 for length in lengths)  # forward only
    print(f"test split: {len(texts)} texts, {np.mean(lengths):.1f} tokens a text, "
          f"{split_flops / len(texts) / 1e9:.2f} GFLOP a text")
    serving = tf.saved_model.load(str(SERVING_DIR)).signatures["serving_default"]
    onnx = {runtime: TextClassifier(batch_size=args.batch_size, runtime=runtime)
            for runtime in RUNTIMES if not cannot_run(runtime)}
    default = TextClassifier(batch_size=args.batch_size)
    print(f"default: {default.runtime} ({default.why}); not run here: " + ("; ".join(
        f"{runtime}: {cannot_run(runtime)}" for runtime in RUNTIMES if cannot_run(runtime))
        or "none"))
    one = "i feel wonderful today"
    paths = {
        "TF Python path": (lambda batch: trained.predict(batch).logits, CHUNK,
                           [COMMAND, "--backend", "tensorflow", one]),
        "SavedModel": (lambda batch: serving(text=tf.constant(batch))["probabilities"].numpy(),
                       args.batch_size, [sys.executable, "-c", SAVED_MODEL_COLD,
                                         str(SERVING_DIR), one]),
        **{runtime: (lambda batch, c=classifier: c.predict(batch).logits, CHUNK,
                     [COMMAND, "--runtime", runtime, one])
           for runtime, classifier in onnx.items()},
        f"default ({default.runtime})": (lambda batch: default.predict(batch).logits, CHUNK,
                                         [COMMAND, one]),
    }
    print(f"{'path':<30} {'cold start s':>22} {'one text ms':>18} {'test split':>14} "
          f"{'GFLOP/s':>8} {'of peak':>7}")
    rates = {}
    for name, (predict, request_size, command) in paths.items():
        starts = cold_start(command, args.starts)
        median, p95 = latency(predict, texts, args.calls)
        rates[name] = throughput(predict, texts, request_size)
        flops = split_flops / len(texts) * rates[name]
        print(f"{name:<30} {statistics.median(starts):5.2f} ({min(starts):.2f}-{max(starts):.2f})"
              f"{'':>8} {median:6.2f} (p95 {p95:5.2f}) {rates[name]:8.1f} texts/s "
              f"{flops / 1e9:7.1f} {flops / peak:6.1%}", flush=True)
    print("throughput / TF Python path: " + ", ".join(
        f"{name} {rate / rates['TF Python path']:.2f}x" for name, rate in rates.items()
        if name != "TF Python path"))


if __name__ == "__main__":
    main()

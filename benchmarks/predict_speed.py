"""Prediction-speed benchmark of the trained model: the Python path (emotion.predict, what
`emotion-predict` runs) and the exported raw-text SavedModel (models/serving).

Prints, for each path: batch throughput on the test split (texts/s; the Python path as
`emotion-predict` feeds it, chunks of 1,024 texts that it sorts by length into batches; the
SavedModel with requests of one batch each, in test-set order, as a server would get them),
single-text latency (median and p95 over repeated calls after warm-up), and the cold start-up
time of `emotion-predict "text"` as a new process. Figures, not assertions.

Usage (from the repo root, after `dvc repro`): python -m benchmarks.predict_speed
"""

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

from emotion.cli import CHUNK
from emotion.data import read_split
from emotion.files import MODEL_DIR, RAW_DIR, SERVING_DIR
from emotion.predict import TextClassifier


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


def cold_start(runs: int) -> list[float]:
    """Seconds for `emotion-predict "text"` from process start to exit."""
    command = shutil.which("emotion-predict", path=str(Path(sys.executable).parent))
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([command, "i feel wonderful today"], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--calls", type=int, default=200, help="single-text calls timed")
    parser.add_argument("--starts", type=int, default=3, help="cold starts timed")
    args = parser.parse_args()
    texts = list(read_split(RAW_DIR, "test")["text"])
    print(f"TF {tf.__version__}; test split: {len(texts)} texts; batch {args.batch_size}")

    start = time.perf_counter()
    classifier = TextClassifier(MODEL_DIR, batch_size=args.batch_size)
    print(f"python path: model loaded in {time.perf_counter() - start:.1f}s")
    start = time.perf_counter()
    serving = tf.saved_model.load(str(SERVING_DIR)).signatures["serving_default"]
    print(f"SavedModel: loaded in {time.perf_counter() - start:.1f}s")

    paths = {
        "python (emotion.predict)": (lambda batch: classifier.predict(batch).logits, CHUNK),
        "SavedModel (models/serving)": (lambda batch: serving(
            text=tf.constant(batch))["probabilities"].numpy(), args.batch_size),
    }
    for name, (predict, request_size) in paths.items():
        rate = throughput(predict, texts, request_size)
        median, p95 = latency(predict, texts, args.calls)
        print(f"  {name:<28} {rate:7.1f} texts/s ({request_size} a request)   single text: median "
              f"{median:5.1f} ms, p95 {p95:5.1f} ms", flush=True)
    starts = cold_start(args.starts)
    print(f"  emotion-predict \"text\" cold start: {', '.join(f'{s:.1f}' for s in starts)} s "
          f"(median {statistics.median(starts):.1f} s)")


if __name__ == "__main__":
    main()

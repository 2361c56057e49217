"""Threads and batch sizes of the ONNX runtime folder, measured: for each graph (float32,
int8) and onnxruntime intra-op thread count, the single-text latency (median and p95 of
one-text calls, what a server or a shell call pays) and the test split's texts/s at each
batch size (the onnx backend's length-sorted batches, as TextClassifier runs them;
tokenizing included).
Rounds alternate the settings, so a slow spell of the machine spreads over all of them;
each figure is the median over rounds. Figures, not assertions; the CPU is printed first.

Usage (after `dvc repro publish`): python -m benchmarks.onnx_settings [--rounds 3]
"""

import argparse
import os
import statistics
import time

import numpy as np

from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.paths import ONNX_DIR, RAW_DIR
from emotion.prediction.onnx_backend import OnnxBackend
from emotion.prediction.runtime_settings import RUNTIMES

BATCH_SIZES = (1, 8, 16, 32, 64, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="one-text calls timed")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}], {os.cpu_count()} logical CPUs")
    texts = list(read_split(RAW_DIR, "test")["text"])
    threads = sorted({1, os.cpu_count() or 1})
    backends = {(variant, count): OnnxBackend(ONNX_DIR, variant, 1, threads=count)
                for variant in RUNTIMES if RUNTIMES[variant].engine == "onnxruntime"
                for count in threads}
    rates: dict[tuple, list[float]] = {}
    latencies: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for (variant, count), backend in backends.items():
            def predict(batch: list[str], backend: OnnxBackend = backend) -> np.ndarray:
                return backend.logits(backend.encode(batch)[0])

            backend.batch_size = 1
            for text in texts[:20]:  # warm-up
                predict([text])
            for text in texts[20:20 + args.calls]:
                start = time.perf_counter()
                predict([text])
                latencies.setdefault((variant, count), []).append(
                    (time.perf_counter() - start) * 1000)
            for batch_size in BATCH_SIZES:
                backend.batch_size = batch_size
                start = time.perf_counter()
                predict(texts)
                rates.setdefault((variant, count, batch_size), []).append(
                    len(texts) / (time.perf_counter() - start))
    print(f"{'runtime':<20} {'threads':>7} {'one text ms (p95)':>18} " + " ".join(
        f"{'b' + str(size):>7}" for size in BATCH_SIZES) + "   (test split, texts/s)")
    for (variant, count) in backends:
        times = latencies[variant, count]
        print(f"{variant:<20} {count:>7} {statistics.median(times):8.2f} "
              f"({np.percentile(times, 95):6.2f}) " + " ".join(
                  f"{statistics.median(rates[variant, count, size]):7.1f}"
                  for size in BATCH_SIZES), flush=True)


if __name__ == "__main__":
    main()

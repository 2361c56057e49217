"""This machine's real matmul limit: the fastest dense kernel it offers, measured, not assumed.

TensorFlow picks its matmul kernels at import time: with oneDNN (TF_ENABLE_ONEDNN_OPTS=1) or
its own Eigen kernels (=0), and its default differs between CPUs. So each TensorFlow figure
comes from a child process with the variable set, and NumPy's BLAS (its name and kernel
printed) is the cross-check. Each is measured on a 4096^3 matmul and on the training step's
own shapes: the encoder's dense layers on a batch of 32 x 24 tokens (the mean padded length
of the real data's length buckets). The limit is the fastest of them, per dtype.

Usage: python -m benchmarks.matmul (prints a table); benchmarks.train_speed imports
references() and measures every share of peak against it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# The step's dense layers (rows = 32 x 24 tokens; all-MiniLM-L6-v2: hidden 384, FFN 1536),
# each as often as a layer uses it: Q, K, V and output projections, FFN up and down.
STEP_SHAPES = ((768, 384, 384, 4), (768, 384, 1536, 1), (768, 1536, 384, 1))
SQUARE = 4096


def best_seconds(run, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def tensorflow_figures(dtype_name: str) -> dict[str, float]:
    """GFLOP/s of TensorFlow's matmul (4096^3 and the step's shapes) in this process."""
    import tensorflow as tf

    dtype = getattr(tf, dtype_name)

    def operands(m, k, n):
        return (tf.cast(tf.random.normal([m, k]), dtype), tf.cast(tf.random.normal([k, n]), dtype))

    a, b = operands(SQUARE, SQUARE, SQUARE)
    square = 2 * SQUARE**3 / best_seconds(lambda: tf.matmul(a, b).numpy(), 5)
    pairs = [(operands(m, k, n), count) for m, k, n, count in STEP_SHAPES]
    flops = sum(2 * m * k * n * count for m, k, n, count in STEP_SHAPES)

    def step_mix():
        for (x, y), count in pairs:
            for _ in range(count):
                tf.matmul(x, y)
        tf.matmul(*pairs[0][0]).numpy()  # wait for the queue

    step = flops * 20 / best_seconds(lambda: [step_mix() for _ in range(20)], 5)
    return {"square": square / 1e9, "step_shapes": step / 1e9}


def numpy_figures() -> dict[str, float | str]:
    """GFLOP/s of NumPy's BLAS (float32) and which BLAS and kernel it runs."""
    import numpy as np
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((SQUARE, SQUARE), dtype=np.float32) for _ in range(2))
    square = 2 * SQUARE**3 / best_seconds(lambda: a @ b, 5)
    pairs = [((rng.standard_normal((m, k), dtype=np.float32),
               rng.standard_normal((k, n), dtype=np.float32)), count)
             for m, k, n, count in STEP_SHAPES]
    flops = sum(2 * m * k * n * count for m, k, n, count in STEP_SHAPES)
    step = flops * 20 / best_seconds(
        lambda: [x @ y for _ in range(20) for (x, y), count in pairs for _ in range(count)], 5)
    blas = next((pool for pool in threadpool_info() if pool["user_api"] == "blas"), {})
    return {"square": square / 1e9, "step_shapes": step / 1e9,
            "blas": f"{blas.get('internal_api', '?')} {blas.get('version', '')}".strip(),
            "kernel": blas.get("architecture") or "?", "threads": blas.get("num_threads")}


def child(kind: str, **env: str) -> dict:
    """One measurement in a fresh process (TF's kernels are chosen at import)."""
    environment = {**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment.pop("OPENBLAS_CORETYPE", None)  # NumPy's BLAS picks this CPU's own kernel
    result = subprocess.run([sys.executable, "-m", "benchmarks.matmul", "--child", kind],
                            env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def references() -> dict[str, dict]:
    """Every kernel's figures: {"tf float32 oneDNN on": {...}, ..., "numpy float32": {...}},
    plus "limit float32" / "limit bfloat16": the fastest per measure."""
    rows = {}
    for dtype in ("float32", "bfloat16"):
        for setting in ("1", "0"):
            name = f"tf {dtype} oneDNN {'on' if setting == '1' else 'off'}"
            rows[name] = child(f"tf-{dtype}", TF_ENABLE_ONEDNN_OPTS=setting)
    rows["numpy float32"] = child("numpy")
    for dtype in ("float32", "bfloat16"):
        candidates = [row for name, row in rows.items() if f" {dtype}" in name]
        rows[f"limit {dtype}"] = {measure: max(row[measure] for row in candidates)
                                  for measure in ("square", "step_shapes")}
    return rows


def print_table(rows: dict[str, dict]) -> None:
    print(f"{'matmul kernel':<30} {'4096^3 GFLOP/s':>15} {'step shapes GFLOP/s':>20}")
    for name, row in rows.items():
        extra = (f"  ({row['blas']}, kernel {row['kernel']}, {row['threads']} threads)"
                 if "blas" in row else "")
        print(f"{name:<30} {row['square']:15.1f} {row['step_shapes']:20.1f}{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["tf-float32", "tf-bfloat16", "numpy"])
    args = parser.parse_args()
    if args.child == "numpy":
        print(json.dumps(numpy_figures()))
    elif args.child:
        print(json.dumps(tensorflow_figures(args.child.removeprefix("tf-"))))
    else:
        from emotion.hardware import cpu_model, speed_flags

        print(f"CPU: {cpu_model()}; flags: {' '.join(speed_flags()) or 'unknown'}")
        print_table(references())


if __name__ == "__main__":
    main()

"""oneDNN on or off, decided by measurement: the train step, evaluate and export, A/B.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, and its default differs between CPUs,
so each figure comes from its own child process with the variable set, the two settings
alternated (on, off, on, off, ...) so drift in the machine's speed hits both alike:
- step: the train stage's float32 step (real model, Adam, the train stage's malloc settings)
  on the first --batches length-bucketed batches of the real data, after one warm-up step per
  shape: examples/s;
- evaluate: the evaluate stage's forward pass (emotion.predict, TensorFlow backend) on the
  validation and test texts: texts/s;
- export: the exported SavedModel's serving signature (raw strings in) on the test texts:
  texts/s.
Prints each run, the medians, their on/off ratio and the median of the paired (same round)
on/off ratios. Figures, not assertions.

Usage (after `dvc repro export`; `make bench-onednn`):
    python -m benchmarks.onednn [--rounds 3] [--batches 80] [--only step evaluate export]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from emotion.process import start_tensorflow

WORKLOADS = ("step", "evaluate", "export")


def step_speed(batches: int) -> float:
    """Examples/s of the train stage's float32 step on the first `batches` batches."""
    import tensorflow as tf

    from benchmarks.train_speed import build_model
    from emotion.data import bucket_batches, load_tokenizer, read_split
    from emotion.params import load_params, model_source
    from emotion.paths import TOKENIZED_DIR
    from emotion.training.step import make_train_step

    params = load_params("train")
    train = read_split(TOKENIZED_DIR, "train")
    ids, labels = list(train["input_ids"]), list(train["label"])
    model, optimizer = build_model(params, train.features["label"].names, len(labels),
                                   "float32")
    step = make_train_step(model, optimizer)
    pad = load_tokenizer(*model_source()).pad_token_id
    data = list(bucket_batches(ids, labels, batch_size=params["batch_size"],
                               bucket_lengths=params["bucket_lengths"], pad_id=pad,
                               shuffle_seed=params["seed"]))[:batches]
    warm = {tuple(features["input_ids"].shape): (features, y) for features, y in data}
    for features, y in warm.values():
        step(features, y)
    start = time.perf_counter()
    for features, y in data:
        float(step(features, y)[0])
    return sum(int(tf.size(y)) for _, y in data) / (time.perf_counter() - start)


def evaluate_speed() -> float:
    """Texts/s of the evaluate stage's forward pass on the validation and test texts."""
    from emotion.data import read_split
    from emotion.params import load_params
    from emotion.paths import MODEL_DIR, RAW_DIR
    from emotion.prediction.classifier import TextClassifier

    classifier = TextClassifier(MODEL_DIR, "tensorflow", load_params("evaluate")["batch_size"])
    texts = [text for split in ("validation", "test")
             for text in read_split(RAW_DIR, split)["text"]]
    classifier.predict(texts[:256])  # trace the graph
    start = time.perf_counter()
    classifier.predict(texts)
    return len(texts) / (time.perf_counter() - start)


def export_speed() -> float:
    """Texts/s of the SavedModel's serving signature on the test texts."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 (registers the SavedModel's tokenizer ops)

    from emotion.data import read_split
    from emotion.params import load_params
    from emotion.paths import RAW_DIR, SERVING_DIR

    serve = tf.saved_model.load(str(SERVING_DIR)).signatures["serving_default"]
    batch = load_params("export")["batch_size"]
    texts = list(read_split(RAW_DIR, "test")["text"])
    serve(text=tf.constant(texts[:batch]))
    start = time.perf_counter()
    for first in range(0, len(texts), batch):
        serve(text=tf.constant(texts[first:first + batch]))["label"].numpy()
    return len(texts) / (time.perf_counter() - start)


def child(workload: str, setting: str, batches: int) -> float:
    result = subprocess.run([sys.executable, "-m", "benchmarks.onednn", "--child", workload,
                             "--batches", str(batches), "--onednn", setting],
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{workload} with TF_ENABLE_ONEDNN_OPTS={setting} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setting")
    parser.add_argument("--batches", type=int, default=80, help="timed batches of the step")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--onednn", choices=("0", "1"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the pipeline's process settings, oneDNN as told (the step: as training)
        start_tensorflow(training=args.child == "step", onednn=args.onednn == "1")
        speed = {"step": lambda: step_speed(args.batches), "evaluate": evaluate_speed,
                 "export": export_speed}[args.child]()
        print(json.dumps(speed))
        return

    from emotion.hardware import cpu_model, speed_flags

    print(f"CPU: {cpu_model()}; flags: {' '.join(speed_flags()) or 'unknown'}; "
          f"{os.cpu_count()} CPUs")
    unit = {"step": "examples/s", "evaluate": "texts/s", "export": "texts/s"}
    for workload in args.only:
        runs = {"1": [], "0": []}
        for _ in range(args.rounds):
            for setting in ("1", "0"):
                runs[setting].append(child(workload, setting, args.batches))
                print(f"  {workload} oneDNN {'on ' if setting == '1' else 'off'}: "
                      f"{runs[setting][-1]:.1f} {unit[workload]}", flush=True)
        on, off = statistics.median(runs["1"]), statistics.median(runs["0"])
        paired = statistics.median(a / b for a, b in zip(runs["1"], runs["0"]))
        print(f"{workload}: oneDNN on {on:.1f}, off {off:.1f} {unit[workload]} (medians of "
              f"{args.rounds}); on/off: {on / off:.2f}x of the medians, {paired:.2f}x the "
              f"median of the {args.rounds} paired ratios", flush=True)


if __name__ == "__main__":
    main()

"""Where a training step's time goes, by kind of work, from TensorFlow's own profiler.

Traces a few training steps of the project's step function (the real model of params.yaml on
the real tokenized data, one static-shape batch per sequence length) with
tf.profiler.experimental, reads the trace (XSpace protobuf), and prints for each precision and
length: the step's wall time, and the time every op kernel ran, grouped by kind (matmuls;
attention softmax, reshapes and transposes; GELU; layer norm; dropout and its RNG; casts; the
embedding gradient; the optimizer update; the rest), in ms a step and as shares of all kernel
time. "No op running" is the part of the step's wall time when no kernel ran at all: graph
scheduling and op dispatch.

By default TensorFlow runs two kernels at once (two inter-op threads on 2 cores): kernel time
then exceeds the step's wall time, and a small kernel that runs beside a matmul counts the
time it waits for a core. --serial runs one kernel at a time (one inter-op thread, each
kernel still using every core), so the kinds' times add up to the step and their shares are
what removing each kind's work would save in that mode.

Usage (from the repo root, after `dvc repro tokenize`; `make profile`):
    python -m benchmarks.profile_step [--lengths 32 64] [--precisions float32 mixed_bfloat16]
                                      [--serial]
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # the train stage's own process settings
    start_tensorflow(training=True)

import argparse
import glob
import os
import statistics
import tempfile
import time
from collections import defaultdict

import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from emotion.data import load_tokenizer, read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.model import new_classifier, seed_everything
from emotion.params import load_params, model_source
from emotion.paths import TOKENIZED_DIR
from emotion.training.settings import PRECISIONS
from emotion.training.step import make_train_step, new_optimizer, set_precision

MATMULS = {"MatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul", "_FusedMatMul",
           "_MklNativeFusedMatMul", "_MklFusedMatMul", "_MklBatchMatMulV2", "Einsum",
           "_MklEinsum", "_MklNativeBatchMatMulV2"}
SHAPE_OPS = {"Softmax", "_MklSoftmax", "Reshape", "Transpose", "_MklTranspose",
             "ConjugateTranspose", "ExpandDims", "Squeeze", "ConcatV2", "StridedSlice",
             "StridedSliceGrad", "Slice", "Pack", "Unpack", "Split", "SplitV"}
SPARSE_UPDATE_OPS = {"Unique", "UnsortedSegmentSum", "ResourceScatterAdd",
                     "ResourceScatterUpdate", "ResourceGather", "ResourceSparseApplyAdam",
                     "SparseSegmentSum", "GatherV2"}
BIAS_OPS = {"BiasAdd", "BiasAddGrad", "AddN"}
KINDS = ["matmuls", "bias adds, gradient sums (AddN)", "attention softmax, reshapes, transposes",
         "GELU", "layer norm", "dropout and its RNG", "casts", "embedding gradient",
         "optimizer update", "other ops"]


def kind_of(name: str, op_type: str) -> str:
    """The kind of work of one op, from its type and its name scope."""
    lower = name.lower()
    if "embeddings" in lower and ("gradient_tape" in lower or op_type in SPARSE_UPDATE_OPS):
        return "embedding gradient"
    if name.startswith("Adam/") or "/Adam/" in name:
        return "embedding gradient" if op_type in SPARSE_UPDATE_OPS else "optimizer update"
    if op_type in MATMULS:
        return "matmuls"
    if op_type in BIAS_OPS:
        return "bias adds, gradient sums (AddN)"
    if "dropout" in lower or op_type.startswith(("StatelessRandom", "RngReadAndSkip")):
        return "dropout and its RNG"
    if "layernorm" in lower:
        return "layer norm"
    if "gelu" in lower or op_type == "Erf":
        return "GELU"
    if op_type in SHAPE_OPS or "softmax" in lower:
        return "attention softmax, reshapes, transposes"
    if op_type == "Cast":
        return "casts"
    return "other ops"


def op_times(trace_dir: str) -> tuple[dict[str, float], float]:
    """Seconds of op kernels by kind, and seconds during which at least one kernel ran, from
    the trace's executor threads (tf_Compute lines: one event per op kernel)."""
    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    space.ParseFromString(open(path, "rb").read())
    (host,) = [plane for plane in space.planes if plane.name == "/host:CPU"]
    by_kind, intervals = defaultdict(float), []
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            metadata = host.event_metadata[event.metadata_id]
            if ":" not in metadata.name.replace("::", "") or not event.duration_ps:
                continue  # not an op kernel ("name:Type"), e.g. ExecutorState::Process
            name, op_type = metadata.name.rsplit(":", 1)
            by_kind[kind_of(name, op_type)] += event.duration_ps / 1e12
            start = line.timestamp_ns * 1000 + event.offset_ps
            intervals.append((start, start + event.duration_ps))
    busy, end = 0, None
    for start, stop in sorted(intervals):  # length of the union of the intervals
        if end is None or start > end:
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return dict(by_kind), busy / 1e12


def batch_of_length(ids, labels, length: int, batch_size: int, pad_id: int):
    """A batch of real training sequences of at most `length` tokens, padded to `length`."""
    rows = [i for i, row in enumerate(ids) if length // 2 < len(row) <= length][:batch_size]
    padded = np.full((len(rows), length), pad_id, dtype=np.int32)
    mask = np.zeros_like(padded)
    for j, i in enumerate(rows):
        padded[j, :len(ids[i])] = ids[i]
        mask[j, :len(ids[i])] = 1
    return ({"input_ids": tf.constant(padded), "attention_mask": tf.constant(mask)},
            tf.constant([labels[i] for i in rows], tf.int32))


def profile(precision: str, lengths: list[int], steps: int, keep: str | None) -> None:
    note = set_precision(precision)
    train_params = load_params("train")
    checkpoint, revision = model_source()
    seed_everything(train_params["seed"])
    train = read_split(TOKENIZED_DIR, "train")
    ids, labels = list(train["input_ids"]), list(train["label"])
    model = new_classifier(checkpoint, revision, train.features["label"].names,
                           pooling=train_params["pooling"],
                           classifier_dropout=train_params["classifier_dropout"],
                           classifier_init=train_params["classifier_init"],
                           seed=train_params["seed"])
    optimizer = new_optimizer({**train_params, "precision": precision},
                              steps_per_epoch=len(labels) // train_params["batch_size"])
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer)
    pad_id = load_tokenizer(checkpoint, revision).pad_token_id
    print(f"\n{precision}" + (f" ({note})" if note else ""))
    for length in lengths:
        features, batch_labels = batch_of_length(ids, labels, length,
                                                 train_params["batch_size"], pad_id)
        for _ in range(3):  # trace the graph, warm the caches
            float(step(features, batch_labels)[0])
        walls = []
        with tempfile.TemporaryDirectory() as scratch:
            trace_dir = f"{keep}/{precision}-{length}" if keep else scratch
            tf.profiler.experimental.start(trace_dir)
            for _ in range(steps):
                start = time.perf_counter()
                float(step(features, batch_labels)[0])
                walls.append(time.perf_counter() - start)
            tf.profiler.experimental.stop()
            by_kind, busy = op_times(trace_dir)
        wall, kernels = sum(walls), sum(by_kind.values())
        median = statistics.median(walls) * 1000
        print(f"  batch {len(batch_labels)} x {length} tokens: {median:.0f} ms a step (median of "
              f"{steps}, traced); kernels ran {kernels / steps * 1000:.0f} ms a step in all")
        print(f"    {'kind of work':<42} {'ms a step':>9} {'share of kernel time':>21}")
        for kind in KINDS:
            seconds = by_kind.get(kind, 0.0)
            print(f"    {kind:<42} {seconds / steps * 1000:9.1f} {seconds / kernels:21.1%}")
        idle = max(wall - busy, 0.0)
        print(f"    {'no op running (scheduling, dispatch)':<42} {idle / steps * 1000:9.1f} "
              f"{idle / wall:14.1%} of the step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=[p for p in PRECISIONS if p != "mixed_float16"])
    parser.add_argument("--steps", type=int, default=10, help="traced steps per length")
    parser.add_argument("--keep-traces", metavar="DIR",
                        help="keep the traces there (viewable in TensorBoard's profiler)")
    parser.add_argument("--serial", action="store_true",
                        help="one kernel at a time (one inter-op thread): additive times")
    args = parser.parse_args()
    if args.serial:  # before TensorFlow runs anything
        tf.config.threading.set_inter_op_parallelism_threads(1)
    print(f"CPU: {cpu_model()}; flags: {' '.join(speed_flags()) or 'unknown'}; "
          f"{os.cpu_count()} logical CPUs; TF {tf.__version__}"
          + ("; one inter-op thread (--serial)" if args.serial else ""))
    for precision in args.precisions:
        profile(precision, args.lengths, args.steps, args.keep_traces)


if __name__ == "__main__":
    main()

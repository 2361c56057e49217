"""Training-speed benchmark on the real tokenized data, in one process.

Compares three input pipelines for the same model and optimizer step:
  (a) naive:   every sequence padded to 128 tokens, random batches
  (b) dynamic: random batches padded to their longest sequence, one shape-generic graph
               (what Keras fit() does with a padded_batch dataset)
  (c) project: length buckets (train.bucket_lengths), one static-shape graph per length
and prints examples/s, tokens/s, mean padded length, the (c)/(a) ratio, and the achieved
FLOP/s as a share of this machine's real float32 matmul limit: the fastest of TensorFlow with
oneDNN on, off and NumPy's BLAS, on the step's own shapes (benchmarks.matmul, measured first
in the same run; the 4096^3 share is printed too). Then (c) again in mixed bfloat16
(train.precision: mixed_bfloat16), against the bfloat16 limit, with the speed-up over
float32, and both precisions with the step compiled by XLA (train.xla). Also times the
tokenizer on all texts. Figures, not assertions; the CPU model and its flags are printed
first, and the oneDNN setting this process runs with (the stages' own: see dvc.yaml).

Usage (from the repo root, after `dvc repro tokenize`): python -m benchmarks.train_speed
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # the train stage's own process settings
    start_tensorflow(training=True)

import argparse
import os
import time

import numpy as np
import tensorflow as tf

from benchmarks.matmul import print_table, references
from emotion.data import bucket_batches, encode, load_tokenizer, read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.model import new_classifier, seed_everything
from emotion.params import load_params, model_source
from emotion.paths import RAW_DIR, SPLITS, TOKENIZED_DIR
from emotion.training.step import make_train_step, new_optimizer, set_precision, train_step_function


def flops_counter(model):
    """A function(batch, length) -> FLOPs of one training step: 3x forward; forward = 2 x
    non-embedding params per token + attention (QK^T and AV: 4 x length x hidden per token
    per layer). Parameters are counted once, here."""
    config = model.config
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables
                 if "embeddings" not in v.name)
    attention = 4 * config.num_hidden_layers * config.hidden_size

    def train_flops(batch: int, length: int) -> float:
        return 3 * batch * length * (2 * params + attention * length)

    return train_flops


def random_batches(ids, labels, batch_size, pad_id, seed, fixed_length=None):
    """Shuffled batches padded to `fixed_length`, or to each batch's longest sequence."""
    order = np.random.default_rng(seed).permutation(len(labels))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        rows = [ids[i] for i in order[start:start + batch_size]]
        length = fixed_length or max(len(r) for r in rows)
        padded = np.full((len(rows), length), pad_id, dtype=np.int32)
        mask = np.zeros_like(padded)
        for i, row in enumerate(rows):
            padded[i, :len(row)] = row[:length]
            mask[i, :len(row)] = 1
        yield ({"input_ids": tf.constant(padded), "attention_mask": tf.constant(mask)},
               tf.constant([labels[i] for i in order[start:start + batch_size]], tf.int32))


def generic_step(model, optimizer):
    """The project's step traced once for every shape, as Keras fit() does with a
    padded_batch dataset."""
    spec = tf.TensorSpec([None, None], tf.int32)
    return train_step_function(model, optimizer).get_concrete_function(
        {"input_ids": spec, "attention_mask": spec}, tf.TensorSpec([None], tf.int32))


def build_model(train_params: dict, names: list[str], examples: int, precision: str):
    """A fresh model (in `precision`) and its optimizer, seeded as the train stage seeds."""
    checkpoint, revision = model_source()
    seed = train_params["seed"]
    set_precision(precision)
    seed_everything(seed)
    model = new_classifier(checkpoint, revision, names, pooling=train_params["pooling"],
                           classifier_dropout=train_params["classifier_dropout"],
                           classifier_init=train_params["classifier_init"], seed=seed)
    optimizer = new_optimizer({**train_params, "precision": precision},
                              steps_per_epoch=examples // train_params["batch_size"])
    optimizer.build(model.trainable_variables)
    return model, optimizer


def measure(name, step, batches, train_flops, seconds, peak):
    """Warm up on one batch of every shape, then time steps for about `seconds`."""
    batches = list(batches)
    warm = {}
    for features, labels in batches:
        warm.setdefault(tuple(features["input_ids"].shape), (features, labels))
    start = time.perf_counter()
    for features, labels in warm.values():
        step(features, labels)
    warmup = time.perf_counter() - start
    examples = tokens = flops = 0
    start = time.perf_counter()
    for features, labels in batches:
        float(step(features, labels)[0])
        batch, length = features["input_ids"].shape
        examples += batch
        tokens += batch * length
        flops += train_flops(batch, length)
        if time.perf_counter() - start > seconds:
            break
    elapsed = time.perf_counter() - start
    row = {"examples_s": examples / elapsed, "tokens_s": tokens / elapsed,
           "padded_len": tokens / examples, "flops": flops / elapsed,
           "peak_share": flops / elapsed / peak}
    print(f"  {name:<34} {row['examples_s']:7.1f} ex/s  {row['tokens_s']:8.0f} tok/s  "
          f"padded len {row['padded_len']:5.1f}  {row['flops'] / 1e9:6.1f} GFLOP/s "
          f"({row['peak_share']:.0%} of the limit)  [{len(warm)} shapes, warm-up {warmup:.0f}s]",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="timed seconds per variant")
    args = parser.parse_args()
    train_params = load_params("train")
    checkpoint, revision = model_source()
    max_length = load_params("model")["max_length"]
    batch_size = train_params["batch_size"]

    print(f"CPU: {cpu_model()}; flags: {' '.join(speed_flags()) or 'unknown'}")
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs; this process: the train stage's "
          f"settings (emotion.process), TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (TF default for this CPU)')}")
    kernels = references()
    print_table(kernels)
    # The limit a step can reach: the fastest kernel on the step's own shapes.
    peak = kernels["limit float32"]["step_shapes"] * 1e9
    bf16_peak = kernels["limit bfloat16"]["step_shapes"] * 1e9
    square_peak = kernels["limit float32"]["square"] * 1e9
    print(f"shares below are of the step-shape limits: float32 {peak / 1e9:.1f}, bfloat16 "
          f"{bf16_peak / 1e9:.1f} GFLOP/s (4096^3 limits: {square_peak / 1e9:.1f}, "
          f"{kernels['limit bfloat16']['square']:.1f})")

    tokenizer = load_tokenizer(checkpoint, revision)
    texts = [text for split in SPLITS for text in read_split(RAW_DIR, split)["text"]]
    start = time.perf_counter()
    encode(tokenizer, texts, max_length)
    print(f"tokenizer on all {len(texts)} texts (batched, fast tokenizer): "
          f"{time.perf_counter() - start:.2f}s")

    seed = train_params["seed"]
    train = read_split(TOKENIZED_DIR, "train")
    ids, labels = list(train["input_ids"]), list(train["label"])

    def build(precision: str):
        return build_model(train_params, train.features["label"].names, len(labels), precision)

    model, optimizer = build("float32")
    pad = tokenizer.pad_token_id
    train_flops = flops_counter(model)

    def buckets():
        return bucket_batches(ids, labels, batch_size=batch_size,
                              bucket_lengths=train_params["bucket_lengths"], pad_id=pad,
                              shuffle_seed=seed)

    print(f"training steps, batch {batch_size}, {checkpoint}:")
    naive = measure("(a) pad to 128, random batches", generic_step(model, optimizer),
                    random_batches(ids, labels, batch_size, pad, seed, fixed_length=128),
                    train_flops, args.seconds, peak)
    dynamic = measure("(b) per-batch padding, random", generic_step(model, optimizer),
                      random_batches(ids, labels, batch_size, pad, seed), train_flops,
                      args.seconds, peak)
    project = measure("(c) project: buckets, static shapes", make_train_step(model, optimizer),
                      buckets(), train_flops, args.seconds, peak)
    print(f"(c) against the 4096^3 float32 limit: {project['flops'] / square_peak:.0%}")
    print(f"speed-up (c)/(a): {project['examples_s'] / naive['examples_s']:.2f}x, "
          f"(c)/(b): {project['examples_s'] / dynamic['examples_s']:.2f}x")
    model, optimizer = build("mixed_bfloat16")
    bf16 = measure("(c) in mixed bfloat16 (vs its peak)", make_train_step(model, optimizer),
                   buckets(), train_flops, args.seconds, bf16_peak)
    print(f"mixed bfloat16 / float32 (c): {bf16['examples_s'] / project['examples_s']:.2f}x")
    for precision, uncompiled, matmul_peak_here in (("float32", project, peak),
                                                    ("mixed_bfloat16", bf16, bf16_peak)):
        model, optimizer = build(precision)
        compiled = measure(f"(c) {precision}, train.xla: true",
                           make_train_step(model, optimizer, jit_compile=True), buckets(),
                           train_flops, args.seconds, matmul_peak_here)
        versus_float32 = ("" if uncompiled is project else f"; / float32 without XLA: "
                          f"{compiled['examples_s'] / project['examples_s']:.2f}x")
        print(f"train.xla true / false in {precision} (c): "
              f"{compiled['examples_s'] / uncompiled['examples_s']:.2f}x{versus_float32}")
    epoch_minutes = len(labels) / project["examples_s"] / 60
    print(f"projected default run: {epoch_minutes:.1f} min/epoch, "
          f"{epoch_minutes * train_params['epochs']:.0f} min for {train_params['epochs']} epochs "
          f"(training steps only)")


if __name__ == "__main__":
    main()

"""Training: the precision, the learning-rate schedule, the optimizer, the optimisation step with
one static-shape graph per sequence length, one epoch of steps, and the dropout RNG state that
checkpoints must carry. The train params are read and checked by emotion.training.settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import tensorflow as tf
import tf_keras
from transformers import WarmUp

from emotion.errors import PipelineError
from emotion.hardware import has_bfloat16_units
from emotion.training.distribution import LOST_PEER_ERRORS, lost_peer


def set_precision(precision: str) -> str | None:
    """Make `precision` Keras's dtype policy for the models built after this call; return a
    one-line note when this machine would train faster another way. mixed_float16 without a
    GPU is a PipelineError."""
    note = None
    if precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise PipelineError("param train.precision: mixed_float16 needs an NVIDIA GPU and none "
                            "is visible; on a CPU use mixed_bfloat16 (CPUs with AVX512_BF16 "
                            "or AMX) or float32")
    if precision == "mixed_bfloat16" and has_bfloat16_units() is False:
        note = ("note: this CPU has no bfloat16 units (AVX512_BF16, AMX): mixed_bfloat16 is "
                "emulated here and slower; train.precision: float32 is faster on it")
    tf_keras.mixed_precision.set_global_policy(precision)
    return note


def learning_rate(settings: dict, steps_per_epoch: int) -> float | Any:
    """The constant learning rate, or a schedule: linear warm-up from 0, then linear decay to 0
    at the last step."""
    if settings["lr_schedule"] == "constant":
        return settings["learning_rate"]
    total_steps = settings["epochs"] * steps_per_epoch
    warmup_steps = round(settings["warmup_ratio"] * total_steps)
    decay = tf_keras.optimizers.schedules.PolynomialDecay(
        settings["learning_rate"], decay_steps=total_steps - warmup_steps, end_learning_rate=0.0)
    return WarmUp(settings["learning_rate"], decay, warmup_steps) if warmup_steps else decay


def learning_rate_at(settings: dict, steps_per_epoch: int, step: int) -> float:
    """The learning rate after `step` optimizer steps (what the next step would use)."""
    rate = learning_rate(settings, steps_per_epoch)
    return float(rate(step)) if callable(rate) else float(rate)


def new_optimizer(settings: dict, steps_per_epoch: int) -> Any:
    """tf_keras' Adam at learning_rate(settings, steps_per_epoch), wrapped for dynamic loss
    scaling under mixed_float16."""
    optimizer = tf_keras.optimizers.Adam(learning_rate(settings, steps_per_epoch))
    if settings["precision"] == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def train_step_function(model: Any, optimizer: Any, strategy: Any = None,
                        jit_compile: bool = False) -> Callable:
    """The tf.function(features, labels) -> (loss, correct) of one optimisation step on a
    global batch. Each of the strategy's replicas takes an equal share of the batch rows; when
    the batch does not divide evenly, the last shares are filled up with copies of its last
    example, weighted 0. Equal shares make every replica draw as many dropout random numbers,
    so all replicas' RNG states stay equal and a checkpoint (which holds the first replica's)
    resumes every replica exactly. A replica's loss is summed over its examples and divided
    by the global batch size, and the optimizer sums the gradients over the replicas: the
    update of the whole batch on one device. With a LossScaleOptimizer (mixed_float16) the
    gradients are computed on the scaled loss. No strategy: TensorFlow's default one.
    jit_compile: the whole step compiled by XLA (train.xla; the default strategy only)."""
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf_keras.losses.Reduction.SUM)
    scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

    def replica_step(features, labels):
        context = tf.distribute.get_replica_context()
        size = tf.shape(labels)[0]
        share = -(-size // context.num_replicas_in_sync)  # rows per replica: size / replicas
        rows = tf.range(share) + share * context.replica_id_in_sync_group  # rounded up
        weights = tf.cast(rows < size, tf.float32)
        rows = tf.minimum(rows, size - 1)
        features = {name: tf.gather(values, rows) for name, values in features.items()}
        labels = tf.gather(labels, rows)
        with tf.GradientTape() as tape:
            # float32 logits (a no-op under the float32 policy: tf.cast returns its input)
            logits = tf.cast(model(features, training=True).logits, tf.float32)
            loss = loss_fn(labels, logits, sample_weight=weights) / tf.cast(size, tf.float32)
            target = optimizer.get_scaled_loss(loss) if scaled else loss
        gradients = tape.gradient(target, model.trainable_variables)
        if scaled:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        right = tf.argmax(logits, -1, output_type=tf.int32) == labels
        correct = tf.reduce_sum(tf.cast(right, tf.float32) * weights)
        return loss, correct

    # autograph=False: the step and the model have no tensor-dependent Python control flow,
    # so AutoGraph would build the same graph, after seconds of rewriting the source of every
    # layer (and it fails loudly if that ever changes). Likewise for the other model graphs.
    @tf.function(jit_compile=jit_compile, autograph=False)
    def step(features, labels):
        loss, correct = strategy.run(replica_step, args=(features, labels))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    return step


def make_train_step(model: Any, optimizer: Any, strategy: Any = None,
                    jit_compile: bool = False) -> Callable:
    """train_step_function with one graph per sequence length (batch size left open), instead
    of Keras's fit(), whose graph sees every bucket as shape (None, None) and loses the
    static-shape speed-up."""
    step = train_step_function(model, optimizer, strategy, jit_compile)
    graphs = {}

    def run(features, labels):
        length = features["input_ids"].shape[1]
        if length not in graphs:
            spec = tf.TensorSpec([None, length], tf.int32)
            graphs[length] = step.get_concrete_function(
                {"input_ids": spec, "attention_mask": spec}, tf.TensorSpec([None], tf.int32)
            )
        return graphs[length](features, labels)

    return run


def train_epoch(train_step: Callable, batches: Iterable, *, label: str, steps: int,
                distribution: str) -> dict:
    """Run one epoch of `train_step` over `batches`, printing progress every 50 steps
    (`label`: "epoch 3/8"); return its mean loss, accuracy, examples, padded tokens and
    seconds. In a multi_worker run, a collective operation that fails because another host is
    gone is a one-line PipelineError naming it."""
    start = time.perf_counter()
    loss_sum, correct, seen, tokens = 0.0, 0, 0, 0
    for step, (features, labels) in enumerate(batches, start=1):
        try:
            loss, batch_correct = train_step(features, labels)
        except LOST_PEER_ERRORS as error:
            if distribution != "multi_worker":
                raise
            raise lost_peer(error) from None
        loss_sum += float(loss) * len(labels)
        correct += int(batch_correct)
        seen += len(labels)
        tokens += int(tf.size(features["input_ids"]))
        if step % 50 == 0:
            print(f"{label} step {step}/{steps} loss {loss_sum / seen:.4f} acc "
                  f"{correct / seen:.4f} {seen / (time.perf_counter() - start):.1f} examples/s",
                  flush=True)
    return {"loss": loss_sum / seen, "accuracy": correct / seen, "examples": seen,
            "tokens": tokens, "seconds": time.perf_counter() - start}


def dropout_generators(model: Any) -> list:
    """The tf.random.Generator behind each dropout layer, created now if still lazy.

    Keras does not make them checkpoint dependencies of the model, so we checkpoint them
    ourselves: without their state a resumed run would draw different dropout masks."""
    generators = []
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Dropout):
            layer._random_generator._maybe_init()  # private API: no public way to force it
            generators.append(layer._random_generator._generator)
    return generators

"""Training: the learning-rate schedule, the optimisation step with one static-shape graph per
sequence length, and the dropout RNG state that checkpoints must carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tf_keras
from transformers import WarmUp

LR_SCHEDULES = ("constant", "linear")


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


def train_step_function(model: Any, optimizer: Any) -> Callable:
    """The tf.function(features, labels) -> (loss, correct) of one optimisation step."""
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True).logits
            loss = loss_fn(labels, logits)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels,
                                        tf.int32))
        return loss, correct

    return step


def make_train_step(model: Any, optimizer: Any) -> Callable:
    """train_step_function with one graph per sequence length (batch size left open), instead
    of Keras's fit(), whose graph sees every bucket as shape (None, None) and loses the
    static-shape speed-up."""
    step = train_step_function(model, optimizer)
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

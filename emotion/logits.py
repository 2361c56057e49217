"""A TensorFlow classifier's logits of token ids, in input order, from length-sorted batches
(the train stage's validation, and the TensorFlow prediction backend)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emotion.data import sorted_batches


def logits_function(model: Any) -> Callable:
    """The model's forward pass in inference mode as one graph for every batch shape."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)
    return tf.function(lambda features: model(features, training=False).logits,
                       input_signature=[{"input_ids": spec, "attention_mask": spec}],
                       autograph=False)  # see emotion.training.train_step_function


def predict_logits(forward: Callable, input_ids: Sequence[Sequence[int]], batch_size: int,
                   pad_id: int) -> np.ndarray:
    """Logits of every sequence, in input order, from a logits_function. Batches are
    length-sorted, so little padding is computed."""
    dataset, order = sorted_batches(input_ids, [0] * len(input_ids), batch_size=batch_size,
                                    pad_id=pad_id)
    sorted_logits = np.concatenate([forward(features).numpy() for features, _ in dataset])
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    return logits


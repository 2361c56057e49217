"""Data: the splits on disk, the tokenizer, the one encoding function, and tf.data batches.

TensorFlow is imported inside the functions that need it, so the data stages start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from emotion.errors import PipelineError, first_line

if TYPE_CHECKING:
    import datasets
    import tensorflow as tf
    from transformers import PreTrainedTokenizerFast


def read_split(folder: Path, split: str) -> datasets.Dataset:
    """Load <folder>/<split>.parquet as a datasets.Dataset (label names kept); a missing,
    unreadable or empty file is a PipelineError naming it.

    Note: with datasets 5, dataset["column"] is a lazy Column; use list() for a list."""
    import datasets

    path = folder / f"{split}.parquet"
    if not path.exists():
        raise PipelineError(f"{path} not found: run the stage that writes it first")
    try:
        dataset = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise PipelineError(f"{path}: not a readable parquet file ({first_line(error)})") from None
    if dataset.num_rows == 0:
        raise PipelineError(f"{path}: split '{split}' has no rows")
    return dataset


def label_names(dataset: datasets.Dataset) -> list[str]:
    """The ClassLabel names of a dataset's 'label' column."""
    return list(dataset.features["label"].names)


def check_label_names(dataset: datasets.Dataset, names: list[str], where: Path) -> None:
    """A PipelineError naming `where` unless the dataset's label names are `names` (a model's,
    in its order)."""
    if label_names(dataset) != names:
        raise PipelineError(f"{where}: labels {label_names(dataset)} differ from the model's "
                            f"{names}")


def load_tokenizer(checkpoint: str, revision: str | None = None) -> PreTrainedTokenizerFast:
    """The checkpoint's fast tokenizer (a Hub id at `revision`, or a local folder)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, revision=revision, use_fast=True)
    except (OSError, ValueError) as error:  # ValueError: not a valid Hub id
        raise PipelineError(
            f"param model.checkpoint: cannot load tokenizer: {first_line(error)}") from None
    if not tokenizer.is_fast:
        raise PipelineError(f"param model.checkpoint: {checkpoint} has no fast tokenizer")
    if tokenizer.pad_token_id is None:
        raise PipelineError(f"param model.checkpoint: the tokenizer of {checkpoint} has no "
                            "padding token")
    return tokenizer


def encode(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str],
           max_length: int | None) -> list[list[int]]:
    """Token ids of each text ([CLS] ... [SEP]), cut at max_length tokens (None: no cut),
    unpadded: the one encoding used for training, evaluation and prediction."""
    truncate = max_length is not None
    return tokenizer(list(texts), truncation=truncate, max_length=max_length)["input_ids"]


def bucket_batches(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    *,
    batch_size: int,
    bucket_lengths: Sequence[int],
    pad_id: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Training batches: each sequence goes to the bucket of the smallest length in
    `bucket_lengths` that holds it and is padded to exactly that length, so the model sees
    few distinct shapes and little padding. With a seed, the order is shuffled (before
    bucketing, so batches of all lengths interleave) reproducibly for that seed."""
    import tensorflow as tf

    longest = max(len(ids) for ids in input_ids)
    if longest > bucket_lengths[-1]:
        raise PipelineError(
            f"param train.bucket_lengths: longest sequence has {longest} tokens, "
            f"more than the last bucket length {bucket_lengths[-1]}"
        )
    dataset = _examples(input_ids, labels)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=False)
    # A sequence of length n goes to the first bucket with n < boundary and is padded to
    # boundary - 1, i.e. exactly to its bucket length. (The extra bucket past the last
    # boundary stays empty: no sequence is longer than the last bucket length.)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda features, label: tf.shape(features["input_ids"])[0],
        bucket_boundaries=[length + 1 for length in bucket_lengths],
        bucket_batch_sizes=[batch_size] * (len(bucket_lengths) + 1),
        padded_shapes=({"input_ids": [None], "attention_mask": [None]}, []),
        padding_values=({"input_ids": pad_id, "attention_mask": 0}, 0),
        pad_to_bucket_boundary=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def sorted_batches(
    input_ids: Sequence[Sequence[int]], labels: Sequence[int], *, batch_size: int, pad_id: int
) -> tuple[tf.data.Dataset, list[int]]:
    """Evaluation batches of length-sorted examples, each padded to its own longest sequence.
    Returns the dataset and the order used (order[i] = original index of the i-th example)."""
    import tensorflow as tf

    order = sorted(range(len(labels)), key=lambda i: (len(input_ids[i]), i))
    dataset = _examples([input_ids[i] for i in order], [labels[i] for i in order])
    dataset = dataset.padded_batch(
        batch_size,
        padded_shapes=({"input_ids": [None], "attention_mask": [None]}, []),
        padding_values=({"input_ids": pad_id, "attention_mask": 0}, 0),
    )
    return dataset.prefetch(tf.data.AUTOTUNE), order


def _examples(input_ids: Sequence[Sequence[int]], labels: Sequence[int]) -> tf.data.Dataset:
    import numpy as np
    import tensorflow as tf

    ids = tf.RaggedTensor.from_row_lengths(
        np.concatenate([np.asarray(row, dtype=np.int32) for row in input_ids]),
        np.asarray([len(row) for row in input_ids], dtype=np.int64),
    )
    dataset = tf.data.Dataset.from_tensor_slices((ids, tf.constant(labels, dtype=tf.int32)))
    return dataset.map(
        lambda ids, label: ({"input_ids": ids, "attention_mask": tf.ones_like(ids)}, label)
    )

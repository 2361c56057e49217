"""Code shared by the stage scripts: params, errors, atomic outputs and the TF input pipeline.

TensorFlow is imported inside the functions that need it, so the data stages start fast.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import tensorflow as tf

# Quieter logs for hour-long runs (users can override either in their environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

PARAMS_FILE = "params.yaml"
SPLITS = ("train", "validation", "test")
RAW_DIR = Path("data/raw")
TOKENIZED_DIR = Path("data/tokenized")
MODEL_DIR = Path("models/emotion")
# Resume state of the train stage: scratch space, git- and DVC-ignored, not a DVC output
# (see stages/train.py).
CHECKPOINT_DIR = Path("models/.checkpoints")


class PipelineError(Exception):
    """A problem with the user's params or data, reported as one line and a non-zero exit."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); turn a PipelineError into a one-line message and exit code 1."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats without a dot, e.g. 3e-05: what
    `dvc exp run -S train.learning_rate=3e-5` writes, and a string to YAML 1.1."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_params(section: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one section of params.yaml."""
    try:
        params = yaml.load(Path(path).read_text(), Loader=_ParamsLoader)
    except FileNotFoundError:
        raise PipelineError(f"params file {path} not found") from None
    if not isinstance(params, dict) or not isinstance(params.get(section), dict):
        raise PipelineError(f"{path}: missing section '{section}'")
    return params[section]


def param(params: dict[str, Any], section: str, key: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch params[key], checking its type; errors name the param as section.key."""
    if key not in params:
        raise PipelineError(f"param {section}.{key} is missing")
    value = params[key]
    if isinstance(value, bool) and kind is not bool:
        raise PipelineError(f"param {section}.{key} must be {_kind_name(kind)}, got {value!r}")
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise PipelineError(f"param {section}.{key} must be {_kind_name(kind)}, got {value!r}")
    return value


def positive(params: dict[str, Any], section: str, key: str, kind: type) -> Any:
    """Fetch a number param that must be > 0."""
    value = param(params, section, key, kind)
    if value <= 0:
        raise PipelineError(f"param {section}.{key} must be > 0, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", list: "a list",
                        bool: "true/false", type(None): "null"}.get(k, k.__name__) for k in kinds)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write a file or folder into; on success move it
    into place (replacing what was there), on failure delete it and keep the old output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = staging / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written to {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- Data ------------------------------------------------------------------------------------


def read_split(folder: Path, split: str):  # -> datasets.Dataset
    """Load data/<stage>/<split>.parquet as a datasets.Dataset (label names kept).

    Note: with datasets 5, dataset["column"] is a lazy Column; use list() for a list."""
    import datasets

    path = folder / f"{split}.parquet"
    if not path.exists():
        raise PipelineError(f"{path} not found: run the stage that writes it first")
    return datasets.Dataset.from_parquet(str(path), keep_in_memory=True)


def label_names(dataset) -> list[str]:
    """The ClassLabel names of a dataset's 'label' column."""
    return list(dataset.features["label"].names)


def load_tokenizer(checkpoint: str):
    """The checkpoint's fast tokenizer (Hub id or local folder)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
    except (OSError, ValueError) as error:  # ValueError: not a valid Hub id
        first_line = str(error).strip().splitlines()[0]
        raise PipelineError(
            f"param model.checkpoint: cannot load tokenizer: {first_line}"
        ) from None
    if not tokenizer.is_fast:
        raise PipelineError(f"param model.checkpoint: {checkpoint} has no fast tokenizer")
    return tokenizer



def save_figure(figure, path: Path) -> None:
    """Save a PNG with no timestamp metadata, so equal inputs give equal bytes."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)



# --- TensorFlow input pipeline and model ----------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TF, make TF ops deterministic, and give Keras layers (dropout)
    seeded tf.random.Generator state, which checkpoints save and restore."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    tf_keras.backend.experimental.enable_tf_random_generator()
    tf.config.experimental.enable_op_determinism()


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
    order = sorted(range(len(labels)), key=lambda i: (len(input_ids[i]), i))
    dataset = _examples([input_ids[i] for i in order], [labels[i] for i in order])
    dataset = dataset.padded_batch(
        batch_size,
        padded_shapes=({"input_ids": [None], "attention_mask": [None]}, []),
        padding_values=({"input_ids": pad_id, "attention_mask": 0}, 0),
    )
    import tensorflow as tf

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


POOLINGS = ("cls", "mean")


def classifier_class(pooling: str):
    """The from_pretrained class for a classifier head on `pooling`: "cls" is the standard
    TFAutoModelForSequenceClassification (tanh pooler over [CLS] -> dropout -> dense, as in the
    reference); "mean" is TFBertForMeanPooledClassification (BERT-family checkpoints only)."""
    from transformers import TFAutoModelForSequenceClassification

    return TFAutoModelForSequenceClassification if pooling == "cls" else mean_pooling_classifier()


def load_classifier(folder: str | Path):
    """A classifier saved by the train stage (either pooling), with its weights."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    return classifier_class(getattr(config, "pooling", "cls")).from_pretrained(str(folder))


@cache
def mean_pooling_classifier() -> type:
    """TFBertForSequenceClassification with the head on the mean of the last hidden states
    over real (unmasked) tokens, the pooling all-MiniLM-L6-v2 was trained with, and no
    pooler layer. Same variable names as the standard head ("bert", "classifier"), so
    from_pretrained loads the encoder from any BERT checkpoint; saved models record
    `pooling: mean` in config.json, which load_classifier reads."""
    import tensorflow as tf
    from transformers import TFBertForSequenceClassification
    from transformers.modeling_tf_outputs import TFSequenceClassifierOutput
    from transformers.modeling_tf_utils import unpack_inputs
    from transformers.models.bert.modeling_tf_bert import TFBertMainLayer

    class TFBertForMeanPooledClassification(TFBertForSequenceClassification):
        _keys_to_ignore_on_load_unexpected = [
            *TFBertForSequenceClassification._keys_to_ignore_on_load_unexpected, r"pooler"]

        def __init__(self, config, *inputs, **kwargs):
            config.pooling = "mean"
            super().__init__(config, *inputs, **kwargs)
            self.bert = TFBertMainLayer(config, add_pooling_layer=False, name="bert")

        @unpack_inputs
        def call(self, input_ids=None, attention_mask=None, token_type_ids=None,
                 position_ids=None, head_mask=None, inputs_embeds=None,
                 output_attentions=None, output_hidden_states=None, return_dict=None,
                 labels=None, training=False):
            outputs = self.bert(
                input_ids=input_ids, attention_mask=attention_mask,
                token_type_ids=token_type_ids, position_ids=position_ids, head_mask=head_mask,
                inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                output_hidden_states=output_hidden_states, return_dict=True, training=training)
            hidden = outputs.last_hidden_state
            if attention_mask is None:
                mask = tf.ones_like(hidden[:, :, :1])
            else:
                mask = tf.cast(attention_mask, hidden.dtype)[:, :, None]
            pooled = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(
                tf.reduce_sum(mask, axis=1), 1e-9)
            logits = self.classifier(self.dropout(pooled, training=training))
            loss = None if labels is None else self.hf_compute_loss(labels=labels, logits=logits)
            return TFSequenceClassifierOutput(loss=loss, logits=logits,
                                              hidden_states=outputs.hidden_states,
                                              attentions=outputs.attentions)

    return TFBertForMeanPooledClassification


def predict_logits(model, input_ids: Sequence[Sequence[int]], batch_size: int, pad_id: int):
    """Logits (numpy, in the input order) of a from_pretrained classifier, in inference mode.

    Batches are length-sorted, so little padding is computed."""
    import numpy as np
    import tensorflow as tf

    dataset, order = sorted_batches(input_ids, [0] * len(input_ids), batch_size=batch_size,
                                    pad_id=pad_id)
    forward = tf.function(lambda features: model(features, training=False).logits,
                          reduce_retracing=True)
    sorted_logits = np.concatenate([forward(features).numpy() for features, _ in dataset])
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    return logits


def softmax_metrics(logits, labels) -> tuple[float, float]:
    """Mean cross-entropy of softmax(logits) against integer labels, and accuracy."""
    import numpy as np

    logits = logits.astype(np.float64)
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return float(loss), float((logits.argmax(axis=1) == labels).mean())

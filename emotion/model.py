"""Classifier heads on a pretrained BERT-family encoder: building, seeding, reloading.

Heads (train.pooling, train.classifier_dropout, train.classifier_init):
- the reference (the default): BERT's tanh pooler over [CLS] -> Dense softmax layer with
  Keras's default Glorot-uniform init, no dropout;
- `transformers`' TFBertForSequenceClassification head: the same with dropout 0.1 and
  N(0, 0.02) init (classifier_dropout: 0.1, classifier_init: normal);
- mean pooling: the mean of the last hidden states over real tokens (how all-MiniLM-L6-v2
  was trained), no pooler layer.
A saved model's config.json records its head (`pooling`, `classifier_dropout`,
`classifier_init`), and load_classifier rebuilds exactly that head.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from emotion.errors import PipelineError, first_line

POOLINGS = ("cls", "mean")
# glorot_uniform: Keras's Dense default, the reference's; normal: transformers' BERT init,
# a truncated normal with config.initializer_range (0.02) as standard deviation.
CLASSIFIER_INITS = ("glorot_uniform", "normal")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TF, make TF ops deterministic, and give Keras layers (dropout)
    seeded tf.random.Generator state, which checkpoints save and restore."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    tf_keras.backend.experimental.enable_tf_random_generator()
    tf.config.experimental.enable_op_determinism()


def new_classifier(checkpoint: str, revision: str | None, names: list[str], *, pooling: str,
                   classifier_dropout: float, classifier_init: str, seed: int) -> Any:
    """The pretrained encoder with a new classification head for `names` (see the module
    docstring); the head's initial weights depend only on `seed`. Under a mixed-precision
    Keras policy (train.precision) the head, and so the logits, still compute in float32."""
    import tf_keras
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(checkpoint, revision=revision)
        if pooling == "mean" and config.model_type != "bert":
            raise PipelineError(f"param train.pooling: mean is implemented for BERT-family "
                                f"checkpoints only, and {checkpoint} is a "
                                f"{config.model_type!r} model")
        model = classifier_class(pooling).from_pretrained(
            checkpoint, revision=revision, num_labels=len(names),
            id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)},
            classifier_dropout=classifier_dropout)
    except (OSError, ValueError) as error:  # ValueError: not a valid Hub id
        raise PipelineError(f"param model.checkpoint: cannot load model: {first_line(error)}"
                            ) from None
    head = getattr(model, "classifier", None)
    if head is None or not hasattr(head, "kernel"):
        raise PipelineError(f"param model.checkpoint: {checkpoint} ({config.model_type}) has no "
                            "dense classifier layer to put on it")
    model.config.classifier_init = classifier_init
    if classifier_init == "glorot_uniform":
        head.kernel.assign(tf_keras.initializers.GlorotUniform(seed=seed)(head.kernel.shape))
    if head.compute_dtype != "float32":  # the usual mixed-precision practice: the softmax of
        # 16-bit logits is coarse. Private API: a layer's policy is set at construction, which
        # from_pretrained does.
        head._set_dtype_policy("float32")
    return model


def classifier_class(pooling: str) -> type:
    """The from_pretrained class of a head on `pooling`: "cls" is transformers'
    TFAutoModelForSequenceClassification, "mean" TFBertForMeanPooledClassification."""
    from transformers import TFAutoModelForSequenceClassification

    return TFAutoModelForSequenceClassification if pooling == "cls" else mean_pooling_classifier()


def load_classifier(folder: str | Path) -> Any:
    """A classifier saved by the train stage (any head), with its weights; a missing or
    damaged folder is a PipelineError naming it."""
    from transformers import AutoConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PipelineError(f"{folder}: no trained model there (no config.json): run "
                            "`dvc repro` or `dvc pull` first, or pass the model folder")
    try:
        config = AutoConfig.from_pretrained(str(folder))
        pooling = getattr(config, "pooling", "cls")
        if pooling not in POOLINGS:
            raise PipelineError(f"{folder}/config.json: unknown pooling {pooling!r}")
        return classifier_class(pooling).from_pretrained(str(folder))
    except PipelineError:
        raise
    except Exception as error:  # damaged JSON or weights raise many types
        raise PipelineError(f"{folder}: cannot load the model: {first_line(error)}") from None


def checkpoint_identity(checkpoint: str, revision: str | None) -> str:
    """What the pretrained weights are, exactly: a local folder's content hash, or the Hub
    commit that `revision` resolves to."""
    folder = Path(checkpoint)
    if folder.is_dir():
        digest = hashlib.sha256()
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            digest.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
        return f"sha256:{digest.hexdigest()}"
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(checkpoint, revision=revision, allow_patterns=["config.json"])
    except Exception as error:  # not found, offline without a cache, bad id
        raise PipelineError(f"param model.checkpoint: cannot resolve {checkpoint!r} at revision "
                            f"{revision!r}: {first_line(error)}") from None
    return f"{checkpoint}@{Path(snapshot).name}"


@cache
def mean_pooling_classifier() -> type:
    """TFBertForSequenceClassification with the head on the mean of the last hidden states
    over real (unmasked) tokens, and no pooler layer. Same variable names as the standard head
    ("bert", "classifier"), so from_pretrained loads the encoder from any BERT checkpoint;
    saved models record `pooling: mean` in config.json, which load_classifier reads."""
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

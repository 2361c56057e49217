"""The train params, read from params.yaml and checked, without TensorFlow: the train stage
checks them before it loads the training stack (~5 s), so a bad one fails at once."""

from __future__ import annotations

from emotion.errors import PipelineError
from emotion.model import CLASSIFIER_INITS, POOLINGS
from emotion.params import load_params, model_source, one_of, param, positive

LR_SCHEDULES = ("constant", "linear")
# float32: everything in float32 (the default). mixed_*: Keras mixed precision, matmuls and
# activations in 16 bits, weights (and what is saved) in float32; the classifier head, logits
# and loss stay float32. mixed_float16 adds dynamic loss scaling and is for NVIDIA GPUs.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# none: one device; mirrored: the local devices; multi_worker: the hosts of TF_CONFIG
# (emotion.training.distribution).
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")


def read_train_settings() -> dict:
    """The train section of params.yaml, validated, plus model.checkpoint/revision/max_length."""
    params = load_params("train")
    bucket_lengths = param(params, "train", "bucket_lengths", list)
    if not bucket_lengths or any(
        not isinstance(length, int) or isinstance(length, bool) or length <= 0
        for length in bucket_lengths
    ) or bucket_lengths != sorted(set(bucket_lengths)):
        raise PipelineError(
            f"param train.bucket_lengths must be increasing positive integers, got {bucket_lengths}"
        )
    checkpoint, revision = model_source()
    settings = {
        "checkpoint": checkpoint,
        "revision": revision,
        "max_length": positive(load_params("model"), "model", "max_length", int),
        "seed": param(params, "train", "seed", int),
        "learning_rate": positive(params, "train", "learning_rate", float),
        "epochs": positive(params, "train", "epochs", int),
        "batch_size": positive(params, "train", "batch_size", int),
        "eval_batch_size": positive(params, "train", "eval_batch_size", int),
        "bucket_lengths": bucket_lengths,
        "pooling": one_of(params, "train", "pooling", POOLINGS),
        "classifier_dropout": param(params, "train", "classifier_dropout", float),
        "classifier_init": one_of(params, "train", "classifier_init", CLASSIFIER_INITS),
        "lr_schedule": one_of(params, "train", "lr_schedule", LR_SCHEDULES),
        "warmup_ratio": param(params, "train", "warmup_ratio", float),
        "precision": one_of(params, "train", "precision", PRECISIONS),
        "distribution": one_of(params, "train", "distribution", DISTRIBUTIONS),
        "xla": param(params, "train", "xla", bool),
    }
    if settings["xla"] and settings["distribution"] != "none":
        raise PipelineError(f"param train.xla: true needs train.distribution none, got "
                            f"{settings['distribution']!r}")
    for key in ("classifier_dropout", "warmup_ratio"):
        if not 0 <= settings[key] < 1:
            raise PipelineError(f"param train.{key} must be in [0, 1), got {settings[key]!r}")
    return settings

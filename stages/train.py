"""Stage train: fine-tune the pretrained encoder with a softmax classifier head.

The reference recipe (the defaults): head on pooled [CLS], Adam at a constant
train.learning_rate, sparse categorical cross-entropy, accuracy, train.epochs epochs,
validation after each. Options: train.pooling: mean (mean of the token states, as
all-MiniLM-L6-v2 was trained) and train.lr_schedule: linear (warm-up over
train.warmup_ratio of the steps, then linear decay to 0). Batches are length-bucketed (see
common.bucket_batches) and each bucket length gets its own static-shape training graph.

Resumable: after every epoch the model, optimizer and dropout RNG state go to
models/.checkpoints/. A rerun with the same params and data continues from the last completed
epoch and ends with the same weights as an uninterrupted run. That folder is scratch space,
ignored by git and DVC, not a DVC output: an uncached `persist` output cannot be restored by
`dvc checkout`, so after any experiment `dvc status` would call train stale for good.

Writes models/emotion/ (the best-validation-loss epoch's weights + tokenizer, loadable with
from_pretrained), metrics/train.json and plots/train/history.csv (learning curves).
"""

import hashlib
import json
import shutil
import time

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras
from transformers import AutoConfig, WarmUp

from stages.common import (
    CHECKPOINT_DIR,
    MODEL_DIR,
    POOLINGS,
    TOKENIZED_DIR,
    PipelineError,
    atomic_output,
    bucket_batches,
    classifier_class,
    label_names,
    load_params,
    load_tokenizer,
    param,
    positive,
    predict_logits,
    read_split,
    run_stage,
    seed_everything,
    softmax_metrics,
)

METRICS_FILE = "metrics/train.json"
HISTORY_FILE = "plots/train/history.csv"
LR_SCHEDULES = ("constant", "linear")


def read_train_params() -> dict:
    """The train section, validated, plus model.checkpoint."""
    params = load_params("train")
    bucket_lengths = param(params, "train", "bucket_lengths", list)
    if not bucket_lengths or any(
        not isinstance(length, int) or isinstance(length, bool) or length <= 0
        for length in bucket_lengths
    ) or bucket_lengths != sorted(set(bucket_lengths)):
        raise PipelineError(
            f"param train.bucket_lengths must be increasing positive integers, got {bucket_lengths}"
        )
    settings = {
        "checkpoint": param(load_params("model"), "model", "checkpoint", str),
        "seed": param(params, "train", "seed", int),
        "learning_rate": positive(params, "train", "learning_rate", float),
        "epochs": positive(params, "train", "epochs", int),
        "batch_size": positive(params, "train", "batch_size", int),
        "eval_batch_size": positive(params, "train", "eval_batch_size", int),
        "bucket_lengths": bucket_lengths,
        "pooling": param(params, "train", "pooling", str),
        "lr_schedule": param(params, "train", "lr_schedule", str),
        "warmup_ratio": param(params, "train", "warmup_ratio", float),
    }
    for key, allowed in (("pooling", POOLINGS), ("lr_schedule", LR_SCHEDULES)):
        if settings[key] not in allowed:
            raise PipelineError(f"param train.{key} must be one of {', '.join(allowed)}, "
                                f"got {settings[key]!r}")
    if not 0 <= settings["warmup_ratio"] < 1:
        raise PipelineError(
            f"param train.warmup_ratio must be in [0, 1), got {settings['warmup_ratio']!r}")
    return settings


def load_model(checkpoint: str, names: list[str], pooling: str = "cls"):
    """The pretrained encoder with a new classification head on `pooling` (see
    common.classifier_class)."""
    try:
        if pooling == "mean" and AutoConfig.from_pretrained(checkpoint).model_type != "bert":
            raise PipelineError(f"param train.pooling: mean is implemented for BERT-family "
                                f"checkpoints only, and {checkpoint} is not one")
        return classifier_class(pooling).from_pretrained(
            checkpoint,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
        )
    except (OSError, ValueError) as error:  # ValueError: not a valid Hub id
        first_line = str(error).strip().splitlines()[0]
        raise PipelineError(f"param model.checkpoint: cannot load model: {first_line}") from None


def learning_rate(settings: dict, steps_per_epoch: int):
    """The constant learning rate, or a schedule: linear warm-up from 0, then linear decay to 0
    at the last step."""
    if settings["lr_schedule"] == "constant":
        return settings["learning_rate"]
    total_steps = settings["epochs"] * steps_per_epoch
    warmup_steps = round(settings["warmup_ratio"] * total_steps)
    decay = tf_keras.optimizers.schedules.PolynomialDecay(
        settings["learning_rate"], decay_steps=total_steps - warmup_steps, end_learning_rate=0.0)
    return WarmUp(settings["learning_rate"], decay, warmup_steps) if warmup_steps else decay


def train_step_function(model, optimizer):
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


def make_train_step(model, optimizer):
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


def dropout_generators(model) -> list:
    """The tf.random.Generator behind each dropout layer, created now if still lazy.

    Keras does not make them checkpoint dependencies of the model, so we checkpoint them
    ourselves: without their state a resumed run would draw different dropout masks."""
    generators = []
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Dropout):
            layer._random_generator._maybe_init()  # private API: no public way to force it
            generators.append(layer._random_generator._generator)
    return generators


def run_fingerprint(settings: dict) -> str:
    """What a checkpoint depends on: the params and the tokenized train/validation data.
    With a constant learning rate nothing depends on the number of epochs, so a longer run
    can continue a shorter one; a linear schedule depends on it."""
    relevant = {key: value for key, value in settings.items()
                if key != "epochs" or settings["lr_schedule"] != "constant"}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    for split in ("train", "validation"):
        digest.update((TOKENIZED_DIR / f"{split}.parquet").read_bytes())
    return digest.hexdigest()


def main() -> None:
    settings = read_train_params()
    seed_everything(settings["seed"])
    train, validation = read_split(TOKENIZED_DIR, "train"), read_split(TOKENIZED_DIR, "validation")
    names = label_names(train)
    tokenizer = load_tokenizer(settings["checkpoint"])
    model = load_model(settings["checkpoint"], names, settings["pooling"])
    train_ids, train_labels = list(train["input_ids"]), list(train["label"])
    validation_ids, validation_labels = list(validation["input_ids"]), list(validation["label"])

    def epoch_batches(epoch: int):
        return bucket_batches(
            train_ids, train_labels, batch_size=settings["batch_size"],
            bucket_lengths=settings["bucket_lengths"], pad_id=tokenizer.pad_token_id,
            shuffle_seed=settings["seed"] + epoch,
        )

    batches_per_epoch = sum(1 for _ in epoch_batches(0))  # every epoch has as many
    optimizer = tf_keras.optimizers.Adam(learning_rate(settings, batches_per_epoch))
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer)

    # Resume from the last completed epoch if the checkpoint belongs to this exact run.
    fingerprint = run_fingerprint(settings)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     dropout_rng=dropout_generators(model))
    state_file = CHECKPOINT_DIR / "state.json"
    history: list[dict] = []
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state.get("fingerprint") == fingerprint and len(state["history"]) <= settings["epochs"]:
        history = state["history"]
        checkpoint.read(str(CHECKPOINT_DIR / "last" / "ckpt")).assert_consumed()
        print(f"resuming after epoch {len(history)} from {CHECKPOINT_DIR}")
    else:
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)

    for epoch in range(len(history), settings["epochs"]):
        start = time.perf_counter()
        losses, correct, seen, tokens = [], 0, 0, 0
        for step, (features, labels) in enumerate(epoch_batches(epoch), start=1):
            loss, batch_correct = train_step(features, labels)
            losses.append(float(loss) * len(labels))
            correct += int(batch_correct)
            seen += len(labels)
            tokens += int(tf.size(features["input_ids"]))
            if step % 50 == 0:
                elapsed = time.perf_counter() - start
                print(f"epoch {epoch + 1}/{settings['epochs']} step {step}/{batches_per_epoch} "
                      f"loss {sum(losses) / seen:.4f} acc {correct / seen:.4f} "
                      f"{seen / elapsed:.1f} examples/s", flush=True)
        train_seconds = time.perf_counter() - start
        logits = predict_logits(model, validation_ids, settings["eval_batch_size"],
                                tokenizer.pad_token_id)
        val_loss, val_accuracy = softmax_metrics(logits, np.asarray(validation_labels))
        history.append({
            "epoch": epoch + 1,
            "loss": sum(losses) / seen,
            "accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "train_seconds": round(train_seconds, 1),
            "examples_per_second": round(seen / train_seconds, 2),
            "mean_padded_length": round(tokens / seen, 2),
        })
        print(f"epoch {epoch + 1}/{settings['epochs']}: " + ", ".join(
            f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
            for key, value in history[-1].items() if key != "epoch"), flush=True)
        save_checkpoint(checkpoint, model, history, fingerprint)

    best = history[best_epoch(history) - 1]
    model.load_weights(str(best_weights_file(best["epoch"])))
    with atomic_output(MODEL_DIR) as out:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    with atomic_output(HISTORY_FILE) as out:
        pd.DataFrame(history)[["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]].to_csv(
            out, index=False, float_format="%.6f")
    with atomic_output(METRICS_FILE) as out:
        out.write_text(json.dumps({
            "best_epoch": best["epoch"],
            "epochs": len(history),
            "selected_by": "lowest validation loss",
            "validation": {"loss": round(best["val_loss"], 6),
                           "accuracy": round(best["val_accuracy"], 6)},
            "train": {"loss": round(best["loss"], 6), "accuracy": round(best["accuracy"], 6)},
            "train_minutes": round(sum(row["train_seconds"] for row in history) / 60, 1),
            "examples_per_second": round(
                float(np.mean([row["examples_per_second"] for row in history])), 1),
        }, indent=2) + "\n")
    print(f"kept epoch {best['epoch']} (lowest validation loss {best['val_loss']:.4f})")


def save_checkpoint(checkpoint, model, history: list[dict], fingerprint: str) -> None:
    """Save the resumable state after an epoch, and the weights of the best epoch so far.

    Each file is written to a temp name and renamed, and state.json (which names the best
    epoch) goes last, so a kill at any point leaves a consistent earlier state."""
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    best = best_epoch(history)
    if best == history[-1]["epoch"]:
        with atomic_output(best_weights_file(best)) as out:
            model.save_weights(str(out))
    with atomic_output(CHECKPOINT_DIR / "last") as out:
        checkpoint.write(str(out / "ckpt"))
    with atomic_output(CHECKPOINT_DIR / "state.json") as out:
        out.write_text(json.dumps({"fingerprint": fingerprint, "history": history}, indent=2))
    for stale in CHECKPOINT_DIR.glob("best-epoch-*.weights.h5"):
        if stale != best_weights_file(best):
            stale.unlink()


def best_epoch(history: list[dict]) -> int:
    """The epoch with the lowest validation loss (the earliest on a tie)."""
    return min(history, key=lambda row: (row["val_loss"], row["epoch"]))["epoch"]


def best_weights_file(epoch: int):
    return CHECKPOINT_DIR / f"best-epoch-{epoch}.weights.h5"


if __name__ == "__main__":
    run_stage(main)

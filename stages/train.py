"""Stage train: fine-tune the pretrained encoder with a softmax classifier head.

The reference recipe (the defaults): a Dense softmax layer on BERT's pooled [CLS] output,
Adam at a constant train.learning_rate, sparse categorical cross-entropy, accuracy,
train.epochs epochs, validation after each. Options: other heads (see emotion.model),
train.lr_schedule: linear (warm-up over train.warmup_ratio of the steps, then linear decay to
0), train.precision (mixed_bfloat16 on CPUs with bfloat16 units, mixed_float16 on GPUs;
weights stay float32, see emotion.training) and train.xla (the step compiled by XLA). Batches
are length-bucketed (see emotion.data.bucket_batches) and each bucket length gets its own
static-shape training graph.

Resumable: after every epoch the model, optimizer and dropout RNG state go to
models/.checkpoints/. A rerun with the same params and data continues from the last completed
epoch and ends with the same weights as an uninterrupted run; any change to the train stage's
code, data, pretrained weights or frameworks starts afresh (run_fingerprint). That folder is
scratch space, ignored by git and DVC, not a DVC output: an uncached `persist` output cannot be
restored by `dvc checkout`, so after any experiment `dvc status` would call train stale for
good.

Writes models/emotion/ (the best-validation-loss epoch's weights, head and label names in
config.json, and the tokenizer with the training max_length: all that prediction needs),
metrics/train.json and plots/train/history.csv (learning curves).
"""

import hashlib
import json
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
import yaml

from emotion.data import bucket_batches, label_names, load_tokenizer, read_split
from emotion.distribution import (
    DISTRIBUTIONS,
    LOST_PEER_ERRORS,
    broadcast_from_chief,
    describe,
    gather_from_replicas,
    is_chief,
    lost_peer,
    make_strategy,
    worker_deadline,
)
from emotion.errors import PipelineError, exit_on_error, first_line
from emotion.files import (
    CHECKPOINT_DIR,
    MODEL_DIR,
    TOKENIZED_DIR,
    atomic_output,
    atomic_outputs,
)
from emotion.inference import logits_function, loss_and_accuracy, predict_logits
from emotion.model import (
    CLASSIFIER_INITS,
    POOLINGS,
    checkpoint_identity,
    new_classifier,
    seed_everything,
)
from emotion.params import load_params, model_source, one_of, param, positive
from emotion.training import (
    LR_SCHEDULES,
    PRECISIONS,
    dropout_generators,
    make_train_step,
    new_optimizer,
    set_precision,
)

METRICS_FILE = "metrics/train.json"
HISTORY_FILE = "plots/train/history.csv"
# The libraries whose numerics the weights depend on (part of the resume fingerprint).
FRAMEWORKS = ("tensorflow", "tf-keras", "transformers")


def read_train_params() -> dict:
    """The train section, validated, plus model.checkpoint/revision/max_length."""
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


def run_fingerprint(settings: dict) -> str:
    """Everything a checkpoint's weights depend on: the params; every file the train stage
    depends on in dvc.yaml (its code and the tokenized data); the exact pretrained weights; and
    the framework versions. With a constant learning rate nothing depends on the number of
    epochs, so a longer run can continue a shorter one; a linear schedule depends on it."""
    relevant = {key: value for key, value in settings.items()
                if key != "epochs" or settings["lr_schedule"] != "constant"}
    relevant["pretrained"] = checkpoint_identity(settings["checkpoint"], settings["revision"])
    relevant["versions"] = {name: version(name) for name in FRAMEWORKS}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    for path in train_dependencies():
        files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
        for file in files:
            digest.update(str(file).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def train_dependencies() -> list[Path]:
    """The deps of the train stage in dvc.yaml."""
    try:
        deps = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]["train"]["deps"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise PipelineError(f"dvc.yaml: cannot read the train stage's deps ({error})") from None
    missing = [dep for dep in deps if not Path(dep).exists()]
    if missing:
        raise PipelineError(f"dvc.yaml: train dependency {missing[0]} not found")
    return [Path(dep) for dep in deps]


def main() -> None:
    settings = read_train_params()
    distribution = settings["distribution"]
    with worker_deadline(distribution):  # multi_worker: every host joins in time, or an error
        strategy = make_strategy(distribution)  # first: it may set up the devices
        note = set_precision(settings["precision"])
        if note:
            print(note, flush=True)
        if distribution != "none":
            print(describe(strategy, distribution), flush=True)
        seed_everything(settings["seed"])
        train = read_split(TOKENIZED_DIR, "train")
        validation = read_split(TOKENIZED_DIR, "validation")
        names = label_names(train)
        tokenizer = load_tokenizer(settings["checkpoint"], settings["revision"])
        train_ids, train_labels = list(train["input_ids"]), list(train["label"])
        validation_ids = list(validation["input_ids"])
        validation_labels = list(validation["label"])

        def epoch_batches(epoch: int):
            return bucket_batches(
                train_ids, train_labels, batch_size=settings["batch_size"],
                bucket_lengths=settings["bucket_lengths"], pad_id=tokenizer.pad_token_id,
                shuffle_seed=settings["seed"] + epoch,
            )

        batches_per_epoch = sum(1 for _ in epoch_batches(0))  # every epoch has as many
        with strategy.scope():  # the variables of a distributed run are mirrored
            model = new_classifier(
                settings["checkpoint"], settings["revision"], names,
                pooling=settings["pooling"], classifier_dropout=settings["classifier_dropout"],
                classifier_init=settings["classifier_init"], seed=settings["seed"])
            model.config.precision = settings["precision"]  # recorded in the saved config.json
            optimizer = new_optimizer(settings, batches_per_epoch)
            optimizer.build(model.trainable_variables)
            generators = dropout_generators(model)
        train_step = make_train_step(model, optimizer, strategy, jit_compile=settings["xla"])
        forward = logits_function(model)

        # Resume from the last completed epoch if the checkpoint belongs to this exact run.
        # Only the chief has checkpoints; a multi_worker run hands its state to the others.
        fingerprint = run_fingerprint(settings)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                         dropout_rng=generators)
        chief = is_chief(strategy)
        history = resume(checkpoint, fingerprint, settings["epochs"]) if chief else []
        first_epoch = len(history)
        if distribution == "multi_worker":
            first_epoch = join_workers(strategy, fingerprint, first_epoch)
            if first_epoch:
                broadcast_from_chief(strategy, model.variables + optimizer.variables
                                     + [generator.state for generator in generators])
                print(f"resuming after epoch {first_epoch} (the chief's checkpoint)",
                      flush=True)

    for epoch in range(first_epoch, settings["epochs"]):
        start = time.perf_counter()
        losses, correct, seen, tokens = [], 0, 0, 0
        for step, (features, labels) in enumerate(epoch_batches(epoch), start=1):
            try:
                loss, batch_correct = train_step(features, labels)
            except LOST_PEER_ERRORS as error:
                if distribution != "multi_worker":
                    raise
                raise lost_peer(error) from None
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
        if not chief:  # the other workers of a multi_worker run only train
            print(f"epoch {epoch + 1}/{settings['epochs']}: loss {sum(losses) / seen:.4f}",
                  flush=True)
            continue
        logits = predict_logits(forward, validation_ids, settings["eval_batch_size"],
                                tokenizer.pad_token_id)
        val_loss, val_accuracy = loss_and_accuracy(logits, np.asarray(validation_labels))
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

    if not chief:
        print(f"{describe(strategy, distribution)}: done")
        return
    best = history[best_epoch(history) - 1]
    model.load_weights(str(best_weights_file(best["epoch"])))
    # The model folder carries all that prediction needs: the head (config.json), the label
    # names (id2label) and the tokenizer, cutting at the max_length used in training.
    tokenizer.model_max_length = settings["max_length"]
    # All three outputs are moved into place together (or none, if anything fails).
    with atomic_outputs(MODEL_DIR, HISTORY_FILE, METRICS_FILE) as (model_out, history_out,
                                                                   metrics_out):
        model.save_pretrained(str(model_out))
        tokenizer.save_pretrained(str(model_out))
        pd.DataFrame(history)[["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]].to_csv(
            history_out, index=False, float_format="%.6f")
        metrics_out.write_text(json.dumps({
            "best_epoch": best["epoch"],
            "epochs": len(history),
            "selected_by": "lowest validation loss",
            "validation": {"loss": round(best["val_loss"], 6),
                           "accuracy": round(best["val_accuracy"], 6)},
            "train": {"loss": round(best["loss"], 6), "accuracy": round(best["accuracy"], 6)},
            "precision": settings["precision"],
            **({} if distribution == "none" else {
                "distribution": distribution, "replicas": strategy.num_replicas_in_sync}),
            **({"xla": True} if settings["xla"] else {}),
            "train_minutes": round(sum(row["train_seconds"] for row in history) / 60, 1),
            "examples_per_second": round(
                float(np.mean([row["examples_per_second"] for row in history])), 1),
        }, indent=2) + "\n")
    print(f"kept epoch {best['epoch']} (lowest validation loss {best['val_loss']:.4f})")


def join_workers(strategy, fingerprint: str, completed_epochs: int) -> int:
    """Check that every worker of a multi_worker run trains the same thing (the same run
    fingerprint) and return the chief's number of completed epochs, where all start."""
    rows = gather_from_replicas(strategy, [int(fingerprint[:15], 16), completed_epochs])
    if any(row[0] != rows[0][0] for row in rows):
        raise PipelineError("train.distribution multi_worker: the workers' params, code, data "
                            "or frameworks differ from the chief's (run fingerprints differ): "
                            "give every host the same commit and `dvc pull`")
    return rows[0][1]


def resume(checkpoint: tf.train.Checkpoint, fingerprint: str, epochs: int) -> list[dict]:
    """Restore the last completed epoch if models/.checkpoints/ holds this exact run (same
    fingerprint, no more epochs than asked for) and return its history; else start afresh."""
    state_file = CHECKPOINT_DIR / "state.json"
    try:
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        history = state.get("history", [])
    except (json.JSONDecodeError, AttributeError):
        raise PipelineError(f"{state_file} is damaged: delete {CHECKPOINT_DIR} to train afresh"
                            ) from None
    if state.get("fingerprint") != fingerprint or len(history) > epochs:
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)
        return []
    last = CHECKPOINT_DIR / "last" / "ckpt"
    if not (CHECKPOINT_DIR / "last").is_dir():
        raise PipelineError(f"{CHECKPOINT_DIR / 'last'} is missing though {state_file} says "
                            f"{len(history)} epochs are done: delete {CHECKPOINT_DIR} to train "
                            "afresh")
    try:
        checkpoint.read(str(last)).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise PipelineError(f"{last} cannot be restored ({first_line(error)}): delete "
                            f"{CHECKPOINT_DIR} to train afresh") from None
    print(f"resuming after epoch {len(history)} from {CHECKPOINT_DIR}")
    return history


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
    exit_on_error(main)

"""Stage train: fine-tune the pretrained encoder with a softmax classifier head.

The reference recipe (the defaults): a Dense softmax layer on BERT's pooled [CLS] output,
Adam at a constant train.learning_rate, sparse categorical cross-entropy, accuracy,
train.epochs epochs, validation after each. Options: other heads (emotion.model),
train.lr_schedule, train.precision, train.xla and train.distribution (emotion.training,
emotion.training.distribution). Batches are length-bucketed (emotion.data.bucket_batches) and each
bucket length gets its own static-shape training graph.

Resumable (emotion.training.checkpoints): a rerun with the same params, data and code continues from
the last completed epoch in models/.checkpoints/ and ends with the same weights as an
uninterrupted run.

Writes models/trained/ (the best-validation-loss epoch's weights, head and label names in
config.json, and the tokenizer with the training max_length), metrics/train.json and
plots/train/history.csv (learning curves). Stage package calibrates that model into
models/emotion/.
"""

import json

from emotion.errors import exit_on_error
from emotion.process import start_tensorflow
from emotion.training.settings import read_train_settings

if __name__ == "__main__":  # the params first: a bad one fails before TensorFlow loads (~5 s)
    exit_on_error(read_train_settings)
    start_tensorflow(training=True)

import numpy as np
import pandas as pd
import tensorflow as tf

from emotion.data import bucket_batches, label_names, load_tokenizer, read_split
from emotion.files import atomic_outputs
from emotion.logits import logits_function, predict_logits
from emotion.metrics.scores import loss_and_accuracy
from emotion.model import new_classifier, seed_everything
from emotion.paths import HISTORY_FILE, TOKENIZED_DIR, TRAIN_METRICS, TRAINED_DIR
from emotion.training.checkpoints import (
    best_epoch,
    best_weights_file,
    resume,
    run_fingerprint,
    save_checkpoint,
)
from emotion.training.distribution import (
    broadcast_from_chief,
    describe,
    is_chief,
    join_workers,
    make_strategy,
    topology,
    worker_deadline,
)
from emotion.training.history import epoch_line, epoch_record, train_summary
from emotion.training.live import LiveMetrics
from emotion.training.step import (
    dropout_generators,
    learning_rate_at,
    make_train_step,
    new_optimizer,
    set_precision,
    train_epoch,
)


def main() -> None:
    settings = read_train_settings()
    distribution, epochs = settings["distribution"], settings["epochs"]
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
        validation_labels = np.asarray(validation["label"])

        def epoch_batches(epoch: int):
            return bucket_batches(
                train_ids, train_labels, batch_size=settings["batch_size"],
                bucket_lengths=settings["bucket_lengths"], pad_id=tokenizer.pad_token_id,
                shuffle_seed=settings["seed"] + epoch)

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
        fingerprint = run_fingerprint(settings, topology(strategy, distribution))
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                         dropout_rng=generators)
        chief = is_chief(strategy)
        history = resume(checkpoint, fingerprint, epochs) if chief else []
        first_epoch = len(history)
        if distribution == "multi_worker":
            first_epoch = join_workers(strategy, fingerprint, first_epoch)
            if first_epoch:
                broadcast_from_chief(strategy, model.variables + optimizer.variables
                                     + [generator.state for generator in generators])
                print(f"resuming after epoch {first_epoch} (the chief's checkpoint)",
                      flush=True)

    live = LiveMetrics(history) if chief else None  # dvclive/: the epochs so far
    for epoch in range(first_epoch, epochs):
        label = f"epoch {epoch + 1}/{epochs}"
        result = train_epoch(train_step, epoch_batches(epoch), label=label,
                             steps=batches_per_epoch, distribution=distribution)
        if not chief:  # the other workers of a multi_worker run only train
            print(f"{label}: loss {result['loss']:.4f}", flush=True)
            continue
        logits = predict_logits(forward, validation_ids, settings["eval_batch_size"],
                                tokenizer.pad_token_id)
        history.append(epoch_record(
            epoch + 1, result, *loss_and_accuracy(logits, validation_labels),
            learning_rate_at(settings, batches_per_epoch, (epoch + 1) * batches_per_epoch)))
        print(epoch_line(label, history[-1]), flush=True)
        save_checkpoint(checkpoint, model, history, fingerprint)
        live.log(history[-1])

    if not chief:
        print(f"{describe(strategy, distribution)}: done")
        return
    best = history[best_epoch(history) - 1]
    model.load_weights(str(best_weights_file(best["epoch"])))
    save_outputs(model, tokenizer, history, best, settings,
                 strategy.num_replicas_in_sync)
    print(f"kept epoch {best['epoch']} (lowest validation loss {best['val_loss']:.4f})")


def save_outputs(model, tokenizer, history: list[dict], best: dict, settings: dict,
                 replicas: int) -> None:
    """models/trained (the best epoch's weights), plots/train/history.csv and
    metrics/train.json, moved into place together (or none, if anything fails)."""
    # The model folder carries all that prediction needs: the head (config.json), the label
    # names (id2label) and the tokenizer, cutting at the max_length used in training.
    tokenizer.model_max_length = settings["max_length"]
    with atomic_outputs(TRAINED_DIR, HISTORY_FILE, TRAIN_METRICS) as (model_out, history_out,
                                                                     metrics_out):
        model.save_pretrained(str(model_out))
        tokenizer.save_pretrained(str(model_out))
        pd.DataFrame(history)[["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]].to_csv(
            history_out, index=False, float_format="%.6f")
        metrics_out.write_text(json.dumps(train_summary(history, best, settings, replicas),
                                          indent=2) + "\n")


if __name__ == "__main__":
    exit_on_error(main)

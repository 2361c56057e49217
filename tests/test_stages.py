"""Each stage on the tiny dataset and tiny BERT: the outputs of the shared `dvc repro` run
(`dvc_repo`), and stages run in this process on other params."""

import json

import datasets
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    BUCKETED,
    LABELS,
    SPLIT_SIZES,
    digest,
    stage_ok,
    tiny_params,
    write_params,
)

run_ok = stage_ok


def test_download_writes_validated_splits_with_label_names(dvc_repo):
    root, _ = dvc_repo
    for split, size in SPLIT_SIZES.items():
        data = datasets.Dataset.from_parquet(str(root / f"data/raw/{split}.parquet"))
        assert data.num_rows == size
        assert data.column_names == ["text", "label"]
        assert data.features["label"].names == LABELS
        assert all(text.strip() for text in data["text"])


def test_data_stages_are_byte_deterministic(project, dvc_repo):
    """Run again here, the data stages give the bytes the shared `dvc repro` run wrote."""
    root, _ = dvc_repo
    for stage in ("download", "eda", "tokenize"):
        run_ok(stage, project)
    outputs = ("data/raw", "data/tokenized", "plots/eda")
    again = digest(*(project / path for path in outputs), root=project)
    assert len(again) > 10
    assert again == digest(*(root / path for path in outputs), root=root)


def test_download_renames_custom_columns(project, assets, tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    for split in SPLIT_SIZES:
        data = datasets.Dataset.from_parquet(str(assets["dataset"] / f"{split}.parquet"))
        data.rename_columns({"text": "tweet", "label": "emotion"}).to_parquet(
            str(folder / f"{split}.parquet"))
    params = tiny_params(assets)
    params["data"].update(dataset=str(folder), text_column="tweet", label_column="emotion")
    write_params(project, params)
    run_ok("download", project)
    data = datasets.Dataset.from_parquet(str(project / "data/raw/train.parquet"))
    assert data.column_names == ["text", "label"]
    assert data.features["label"].names == LABELS


def test_eda_tables_match_the_data(dvc_repo):
    eda = dvc_repo[0] / "plots/eda"
    for split, size in SPLIT_SIZES.items():
        table = pd.read_csv(eda / f"labels_{split}.csv")
        assert list(table["label"]) == LABELS
        assert table["count"].sum() == size
        assert table["proportion"].sum() == pytest.approx(1.0, abs=1e-5)
    lengths = pd.read_csv(eda / "token_lengths.csv")
    assert {split: lengths[split].sum() for split in SPLIT_SIZES} == SPLIT_SIZES
    summary = json.loads((eda / "summary.json").read_text())
    assert summary["train"]["rows"] == SPLIT_SIZES["train"]
    assert summary["train"]["imbalance_ratio"] == pytest.approx(1.0, abs=0.2)
    for picture in ("label_frequency.png", "label_proportion.png", "text_lengths.png"):
        assert (eda / picture).read_bytes().startswith(b"\x89PNG")


def test_tokenize_writes_unpadded_truncated_ids(project, assets):
    params = tiny_params(assets)
    params["model"]["max_length"] = 8
    write_params(project, params)
    run_ok("download", project)
    run_ok("tokenize", project)
    data = datasets.Dataset.from_parquet(str(project / "data/tokenized/train.parquet"))
    assert data.column_names == ["input_ids", "label"]
    lengths = [len(ids) for ids in data["input_ids"]]
    assert max(lengths) == 8  # truncated at max_length
    assert min(lengths) < 8  # and not padded to it
    assert all(ids[0] == 2 and ids[-1] == 3 for ids in data["input_ids"])  # [CLS] ... [SEP]
    raw = datasets.Dataset.from_parquet(str(project / "data/raw/train.parquet"))
    assert list(data["label"]) == list(raw["label"])


def test_train_evaluate_package_learn_calibrate_and_write_every_output(project, assets):
    params = tiny_params(assets)
    params["train"].update(learning_rate=3.0e-3, epochs=12, bucket_lengths=BUCKETED)
    write_params(project, params)
    for stage in ("download", "tokenize", "train", "evaluate", "package"):
        run_ok(stage, project)

    history = pd.read_csv(project / "plots/train/history.csv")
    assert list(history["epoch"]) == list(range(1, 13))
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    train_metrics = json.loads((project / "metrics/train.json").read_text())
    best = history.loc[history["val_loss"].idxmin()]
    assert train_metrics["best_epoch"] == best["epoch"]
    assert train_metrics["validation"]["loss"] == pytest.approx(best["val_loss"], abs=1e-5)

    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert set(metrics) == {"validation", "test", "calibration", "uncalibrated", "min_prob"}
    assert set(metrics["test"]) == {"accuracy", "loss", "macro_f1", "weighted_f1", "ece"}
    # It learned: an untrained head predicts one class (accuracy 1/6, loss ln 6 = 1.79).
    assert history["val_loss"].min() < 1.5
    assert metrics["test"]["accuracy"] > 0.25
    # Validation scored by evaluate (raw probabilities) matches what train measured on the
    # kept epoch; the temperature fitted there lowers validation's loss (T = 1 was a candidate).
    raw = metrics["uncalibrated"]
    assert raw["validation"]["loss"] == pytest.approx(best["val_loss"], abs=1e-4)
    temperature = metrics["calibration"]["temperature"]
    assert metrics["calibration"]["enabled"] and temperature != 1.0
    # ...and it is the minimum of the validation loss, computed here from the trained model's
    # own logits: scaling T by 10% either way, or T = 1, gives no lower loss.
    from emotion.predict import TextClassifier

    validation = pd.read_parquet(project / "data/raw/validation.parquet")
    logits = TextClassifier(project / "models/trained", backend="tensorflow").predict(
        list(validation["text"])).logits.astype(np.float64)
    labels = validation["label"].to_numpy()

    def loss_at(t: float) -> float:
        scaled = logits / t
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    assert loss_at(temperature) == pytest.approx(metrics["validation"]["loss"], abs=1e-4)
    # (within the fit's bounds, where the tiny model, which fits its validation texts
    # almost perfectly, often ends: at the lower one, sharpening as far as it may)
    from emotion.metrics.calibration import TEMPERATURE_BOUNDS

    low, high = TEMPERATURE_BOUNDS
    neighbours = [t for t in (temperature * 1.1, temperature / 1.1, 1.0) if low <= t <= high]
    assert loss_at(temperature) <= min(map(loss_at, neighbours)) + 1e-12
    assert metrics["validation"]["loss"] < raw["validation"]["loss"]

    report = json.loads((project / "metrics/classification_report.json").read_text())
    assert set(LABELS) <= set(report["test"])
    confusion = pd.read_csv(project / "plots/evaluate/confusion_test.csv")
    assert list(confusion.columns) == ["actual", "predicted", "text"]
    # One row per test example, in test-set order (reviews pair the rows of two revisions).
    raw_test = datasets.Dataset.from_parquet(str(project / "data/raw/test.parquet"))
    assert list(confusion["text"]) == list(raw_test["text"])
    assert list(confusion["actual"]) == [LABELS[i] for i in raw_test["label"]]
    # evaluate.json rounds to 6 decimals
    accuracy = (confusion["actual"] == confusion["predicted"]).mean()
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert (project / "plots/evaluate/confusion_test.png").read_bytes().startswith(b"\x89PNG")
    # The calibration plots cover the test split: every example in one reliability bin, and
    # keeping them all (coverage 1) gives the test accuracy.
    for kind in ("uncalibrated", "calibrated"):
        bins = pd.read_csv(project / f"plots/evaluate/reliability_{kind}.csv")
        assert bins["count"].sum() == SPLIT_SIZES["test"]
        assert ((bins["confidence"] > bins["bin_low"]) & (bins["confidence"] <= bins["bin_high"])
                ).all()
        curve = pd.read_csv(project / f"plots/evaluate/risk_coverage_{kind}.csv")
        assert curve["coverage"].iloc[-1] == 1.0 and curve["threshold"].is_monotonic_decreasing
        assert curve["accuracy"].iloc[-1] == pytest.approx(accuracy, abs=1e-6)
    assert set(metrics["min_prob"]["test"]) == {"0.5", "0.7", "0.9"}

    # package: the trained model with the temperature folded into its head, and a model card.
    import h5py

    from emotion.packaging.model_folder import head_datasets

    trained, published = project / "models/trained", project / "models/build/emotion"
    head = head_datasets(trained / "tf_model.h5")
    with h5py.File(trained / "tf_model.h5") as before, \
            h5py.File(published / "tf_model.h5") as after:
        weights = []
        before.visititems(lambda name, item: weights.append(name)
                          if isinstance(item, h5py.Dataset) else None)
        assert len(weights) > 20
        for name in weights:  # the head divided by T, every other weight untouched
            expected = before[name][...] / temperature if name in head else before[name][...]
            assert after[name][...] == pytest.approx(expected, rel=1e-6)
    assert json.loads((published / "config.json").read_text())["temperature"] == temperature
    card = (published / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    results = header["model-index"][0]["results"][0]
    assert {m["name"]: m["value"] for m in results["metrics"]}["Accuracy"] == metrics[
        "test"]["accuracy"]
    assert header["base_model"] == str(assets["model"]) and header["pipeline_tag"] == (
        "text-classification")
    assert f"T = {temperature:.3f}" in card and "torch_dtype=None" in card

    # transformers' pipeline() loads the published folder and gives evaluate's calibrated
    # probabilities (and the raw model's labels).
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(published), framework="tf",
                        torch_dtype=None)
    texts = list(raw_test["text"][:16])
    scored = classify(texts, truncation=True, top_k=None)
    from emotion.metrics.calibration import probabilities
    from emotion.predict import TextClassifier

    logits = TextClassifier(trained, "tensorflow").predict(texts).logits
    expected = probabilities(logits, temperature)
    got = [[next(s["score"] for s in row if s["label"] == label) for label in LABELS]
           for row in scored]
    assert np.asarray(got) == pytest.approx(expected, abs=1e-5)
    # Checkpoints stay out of the model folders.
    for folder in (trained, published):
        assert not any("ckpt" in f.name for f in folder.iterdir())

    # evaluate.temperature_scaling: false gives the raw probabilities, and the trained weights.
    params["evaluate"]["temperature_scaling"] = False
    write_params(project, params)
    for stage in ("evaluate", "package"):
        run_ok(stage, project)
    off = json.loads((project / "metrics/evaluate.json").read_text())
    assert off["calibration"] == {**metrics["calibration"], "enabled": False, "temperature": 1.0}
    for split in ("validation", "test"):
        assert off[split]["loss"] == off["uncalibrated"][split]["loss"] == raw[split]["loss"]
        assert off[split]["accuracy"] == metrics[split]["accuracy"]
    with h5py.File(trained / "tf_model.h5") as before, \
            h5py.File(published / "tf_model.h5") as after:
        assert all((after[name][...] == before[name][...]).all() for name in weights)


def test_bucket_batches_pad_to_bucket_lengths_and_cover_every_example_once():
    import random

    from emotion.data import bucket_batches

    rng = random.Random(0)
    ids = [[rng.randint(5, 50) for _ in range(rng.randint(1, 30))] for _ in range(200)]
    labels = list(range(200))  # label = index, to track examples
    buckets = [8, 16, 32]

    def epoch(seed):
        seen, shapes = [], set()
        for features, batch_labels in bucket_batches(ids, labels, batch_size=16,
                                                     bucket_lengths=buckets, pad_id=0,
                                                     shuffle_seed=seed):
            length = features["input_ids"].shape[1]
            shapes.add(length)
            for row, mask, label in zip(features["input_ids"].numpy(),
                                        features["attention_mask"].numpy(),
                                        batch_labels.numpy()):
                original = ids[label]
                assert length == min(b for b in buckets if b >= len(original))
                assert list(row[: len(original)]) == original and not row[len(original):].any()
                assert mask.sum() == len(original) and mask[: len(original)].all()
                seen.append(int(label))
        return seen, shapes

    first, shapes = epoch(1)
    assert sorted(first) == labels and shapes == set(buckets)
    assert epoch(1)[0] == first  # same seed, same order
    assert epoch(2)[0] != first  # another epoch's seed, another order


def test_bucket_batches_reject_sequences_longer_than_the_last_bucket():
    from emotion.data import bucket_batches
    from emotion.errors import PipelineError

    with pytest.raises(PipelineError, match="train.bucket_lengths"):
        bucket_batches([[1] * 20], [0], batch_size=4, bucket_lengths=[8, 16], pad_id=0)


def test_mean_pooling_head_trains_and_reloads_faithfully(project, assets):
    params = tiny_params(assets)
    params["train"].update(learning_rate=3.0e-3, epochs=10, pooling="mean",
                           lr_schedule="linear", warmup_ratio=0.1, bucket_lengths=BUCKETED)
    write_params(project, params)
    for stage in ("download", "tokenize", "train", "evaluate"):
        run_ok(stage, project)

    history = pd.read_csv(project / "plots/train/history.csv")
    assert history["val_loss"].min() < 1.5  # it learned (chance: ln 6 = 1.79)
    config = json.loads((project / "models/trained/config.json").read_text())
    assert config["pooling"] == "mean"
    import h5py

    with h5py.File(project / "models/trained/tf_model.h5") as weights:
        names = []
        weights.visit(names.append)
    assert not any("pooler" in name for name in names)
    # evaluate reloaded the saved model (load_classifier) and scored validation exactly as
    # train did with the in-memory model.
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    best_val_loss = json.loads((project / "metrics/train.json").read_text())["validation"]["loss"]
    assert metrics["uncalibrated"]["validation"]["loss"] == pytest.approx(best_val_loss, abs=1e-4)


def test_mean_pooling_ignores_padding_and_loads_the_pretrained_encoder(assets):
    import tensorflow as tf
    from transformers import TFBertModel

    from emotion.model import classifier_class

    model = classifier_class("mean").from_pretrained(str(assets["model"]), num_labels=6)
    encoder = TFBertModel.from_pretrained(str(assets["model"]))
    pretrained = {v.name.split("/", 1)[1]: v.numpy() for v in encoder.bert.weights}
    loaded = {v.name.split("/", 1)[1]: v.numpy() for v in model.bert.weights}
    assert "pooler" not in " ".join(loaded)
    assert loaded.keys() <= pretrained.keys()
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, pretrained[name], err_msg=name)

    ids = tf.constant([[2, 7, 9, 11, 3]])
    padded = tf.constant([[2, 7, 9, 11, 3, 0, 0, 0]])
    logits = model({"input_ids": ids, "attention_mask": tf.ones_like(ids)}).logits
    padded_logits = model({"input_ids": padded,
                           "attention_mask": tf.constant([[1] * 5 + [0] * 3])}).logits
    np.testing.assert_allclose(logits.numpy(), padded_logits.numpy(), atol=1e-5)
    # ...while the same padding counted as tokens changes the prediction.
    unmasked = model({"input_ids": padded, "attention_mask": tf.ones_like(padded)}).logits
    assert np.abs(unmasked.numpy() - logits.numpy()).max() > 1e-4


def test_linear_schedule_warms_up_then_decays_to_zero():
    from emotion.training.step import learning_rate

    settings = {"learning_rate": 1e-3, "epochs": 2, "lr_schedule": "linear",
                "warmup_ratio": 0.25}
    schedule = learning_rate(settings, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in range(21)]
    assert rates[0] == 0
    assert rates[5] == pytest.approx(1e-3)  # end of warm-up: 25% of 20 steps
    assert all(a < b for a, b in zip(rates[:5], rates[1:6]))
    assert all(a > b for a, b in zip(rates[5:20], rates[6:21]))
    assert rates[20] == pytest.approx(0, abs=1e-12)
    assert learning_rate({**settings, "lr_schedule": "constant"}, 10) == 1e-3

"""Calibration's arithmetic (emotion.metrics.calibration), the threshold of emotion.predict, the
model folder's temperature folding and the model card, on synthetic numbers (no DVC, no training:
make test-quick)."""

import h5py
import numpy as np
import pytest
import yaml

from emotion.errors import PipelineError
from emotion.metrics.calibration import (
    TEMPERATURE_BOUNDS,
    at_threshold,
    cross_entropy,
    expected_calibration_error,
    fit_temperature,
    probabilities,
    reliability,
    risk_coverage,
)
from emotion.packaging.model_card import render
from emotion.packaging.model_folder import copy_calibrated, folded_temperature
from emotion.predict import Predictions


def calibrated_logits(seed: int = 0, count: int = 20000, classes: int = 6):
    """Logits whose softmax is the true label distribution, and labels drawn from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (count, classes))
    chances = probabilities(logits)
    labels = np.array([rng.choice(classes, p=row) for row in chances])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [2.5, 0.5])
def test_fit_recovers_the_temperature_of_over_and_under_confident_logits(true_temperature):
    logits, labels = calibrated_logits()
    distorted = logits * true_temperature  # over-confident for T > 1, under- for T < 1
    fitted = fit_temperature(distorted, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    assert cross_entropy(distorted, labels, fitted) < cross_entropy(distorted, labels)
    before = expected_calibration_error(probabilities(distorted), labels)
    after = expected_calibration_error(probabilities(distorted, fitted), labels)
    assert after < 0.02 < before
    assert (probabilities(distorted, fitted).argmax(1) == distorted.argmax(1)).all()


def test_fit_stays_within_its_bounds_on_separable_logits():
    labels = np.arange(60) % 6
    logits = np.eye(6)[labels]  # always right: the loss falls as T goes to 0
    assert fit_temperature(logits, labels) == TEMPERATURE_BOUNDS[0]


def test_expected_calibration_error_and_reliability_by_hand():
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.85, 0.15]])
    labels = np.array([0, 1, 0, 0])
    # 15 bins of width 1/15: 0.6 -> (8/15, 9/15], 0.8 -> (11/15, 12/15], 0.85 and 0.9 ->
    # (12/15, 13/15] and (13/15, 14/15]. Right: 0.9, 0.8, 0.85; wrong: 0.6.
    expected = (0.1 + 0.6 + 0.2 + 0.15) / 4
    assert expected_calibration_error(scores, labels) == pytest.approx(expected)
    rows = reliability(scores, labels)
    assert [row["count"] for row in rows] == [1, 1, 1, 1]
    assert [row["accuracy"] for row in rows] == [0.0, 1.0, 1.0, 1.0]
    assert rows[0]["bin_low"] == pytest.approx(8 / 15, abs=1e-6)
    assert expected_calibration_error(scores, labels, bins=1) == pytest.approx(
        abs(0.75 - np.mean([0.9, 0.6, 0.8, 0.85])))


def test_risk_coverage_and_threshold_keep_the_most_confident_labels():
    scores = np.array([[0.95, 0.05], [0.9, 0.1], [0.7, 0.3], [0.55, 0.45]])
    labels = np.array([0, 0, 1, 0])  # the 0.7 one is wrong
    rows = risk_coverage(scores, labels, points=4)
    assert [row["coverage"] for row in rows] == [0.25, 0.5, 0.75, 1.0]
    assert [row["accuracy"] for row in rows] == pytest.approx([1.0, 1.0, 2 / 3, 0.75])
    assert [row["threshold"] for row in rows] == [0.95, 0.9, 0.7, 0.55]
    assert at_threshold(scores, labels, 0.8) == {"coverage": 0.5, "accuracy": 1.0}
    assert at_threshold(scores, labels, 0.99) == {"coverage": 0.0}


def test_predictions_top_gives_none_below_min_prob():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    predictions = Predictions(["a", "b", "c"], logits.astype(np.float32), [False, False])
    assert predictions.top() == ["a", "a"]
    assert predictions.top(0.5) == ["a", None]
    assert predictions.top(0.0) == ["a", "a"]


def write_weights(folder, head: bool = True):
    folder.mkdir()
    (folder / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    with h5py.File(folder / "tf_model.h5", "w") as file:
        file["bert/tf_bert/embeddings/weight:0"] = np.ones((4, 2), np.float32)
        if head:
            file["classifier/tf_bert/classifier/kernel:0"] = np.full((2, 2), 3.0, np.float32)
            file["classifier/tf_bert/classifier/bias:0"] = np.array([1.5, -3.0], np.float32)


def test_copy_calibrated_divides_the_head_only_and_records_the_temperature(tmp_path):
    write_weights(tmp_path / "trained")
    copy_calibrated(tmp_path / "trained", tmp_path / "published", 1.5)
    with h5py.File(tmp_path / "published/tf_model.h5") as file:
        assert (file["classifier/tf_bert/classifier/kernel:0"][...] == 2.0).all()
        assert file["classifier/tf_bert/classifier/bias:0"][...].tolist() == [1.0, -2.0]
        assert (file["bert/tf_bert/embeddings/weight:0"][...] == 1.0).all()
    assert folded_temperature(tmp_path / "published") == 1.5
    assert folded_temperature(tmp_path / "trained") == 1.0  # an old folder: T = 1


def test_copy_calibrated_names_a_folder_without_a_head(tmp_path):
    write_weights(tmp_path / "trained", head=False)
    with pytest.raises(PipelineError, match=r"tf_model.h5: expected one classifier kernel"):
        copy_calibrated(tmp_path / "trained", tmp_path / "published", 1.5)
    with pytest.raises(PipelineError, match="no trained model there"):
        copy_calibrated(tmp_path / "missing", tmp_path / "other", 1.5)


def test_model_card_metadata_and_weak_classes_come_from_the_metrics():
    labels = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    report = {label: {"precision": 0.9, "recall": 0.9, "f1-score": 0.93, "support": 100}
              for label in labels}
    report["surprise"] = {"precision": 0.7, "recall": 0.72, "f1-score": 0.71, "support": 66}
    split = {"accuracy": 0.9235, "loss": 0.14, "macro_f1": 0.88, "weighted_f1": 0.92,
             "ece": 0.01}
    facts = {
        "name": "emotion", "checkpoint": "sentence-transformers/all-MiniLM-L6-v2",
        "checkpoint_revision": "c974", "dataset": "dair-ai/emotion", "dataset_config": "split",
        "dataset_revision": "c01a", "labels": labels, "max_length": 128,
        "train": {"learning_rate": 1e-5, "epochs": 8, "pooling": "cls"},
        "train_metrics": {"best_epoch": 7, "epochs": 8, "validation": {"accuracy": 0.93}},
        "evaluate": {"test": split, "validation": split,
                     "calibration": {"enabled": True, "temperature": 1.432},
                     "uncalibrated": {"test": {"loss": 0.15, "ece": 0.03}},
                     "min_prob": {"test": {"0.9": {"coverage": 0.9, "accuracy": 0.97}}}},
        "report": {"test": report},
    }
    card = render(facts)
    header = yaml.safe_load(card.split("---\n")[1])
    result = header["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "dair-ai/emotion", "type": "dair-ai/emotion",
                                 "split": "test", "config": "split", "revision": "c01a"}
    assert {m["name"]: m["value"] for m in result["metrics"]}["Accuracy"] == 0.9235
    assert "T = 1.432" in card and "| 0.9 | 90.0% | 0.9700 |" in card
    assert "`surprise` (F1 0.71, 66 test texts)" in card and "`love` (F1" not in card

"""Every file and folder the pipeline reads or writes, defined once. Paths are relative to
the repository's root, where DVC runs the stages."""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")  # the splits a model is scored on

# Stage download, then tokenize.
RAW_DIR = Path("data/raw")
TOKENIZED_DIR = Path("data/tokenized")
# Stage eda.
EDA_DIR = Path("plots/eda")
# Stage train: the best epoch's model (raw probabilities), its metrics and learning curves,
# and its resume state (scratch space, git- and DVC-ignored, not a DVC output).
TRAINED_DIR = Path("models/trained")
TRAIN_METRICS = Path("metrics/train.json")
HISTORY_FILE = Path("plots/train/history.csv")
CHECKPOINT_DIR = Path("models/.checkpoints")
# Stage evaluate.
EVALUATE_METRICS = Path("metrics/evaluate.json")
CLASSIFICATION_REPORT = Path("metrics/classification_report.json")
EVALUATE_PLOTS = Path("plots/evaluate")
TEST_PREDICTIONS = EVALUATE_PLOTS / "confusion_test.csv"  # a row per test text, in order
# Stage package: the folder users get (the trained model calibrated, with its model card).
MODEL_DIR = Path("models/emotion")
# Stage export: the raw-text SavedModel.
SERVING_DIR = Path("models/serving")
EXPORT_METRICS = Path("metrics/export.json")
# Stage onnx: the ONNX runtime folder (emotion-predict's default model).
ONNX_DIR = Path("models/onnx")
ONNX_METRICS = Path("metrics/onnx.json")

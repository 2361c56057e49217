"""Stage evaluate: score the trained model on the validation and test splits.

The model is used as a user would use it: models/emotion/ (its own tokenizer and max_length)
on the raw texts, through emotion.predict.TextClassifier.

Writes metrics/evaluate.json (accuracy, loss, macro/weighted F1, nested by split),
metrics/classification_report.json (per-class precision/recall/F1, scikit-learn),
plots/evaluate/confusion_<split>.csv (one row per example in dataset order: actual,
predicted, text; DVC's confusion template reads the first two, reviews pair the rows) and
plots/evaluate/confusion_<split>.png (row-normalised heat-map).
"""

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, classification_report  # noqa: E402

from emotion.data import label_names, read_split  # noqa: E402
from emotion.errors import PipelineError, exit_on_error  # noqa: E402
from emotion.files import MODEL_DIR, RAW_DIR, atomic_outputs, save_figure  # noqa: E402
from emotion.params import load_params, positive  # noqa: E402
from emotion.predict import TextClassifier  # noqa: E402
from emotion.scores import split_scores  # noqa: E402

EVAL_SPLITS = ("validation", "test")
METRICS_FILE = "metrics/evaluate.json"
REPORT_FILE = "metrics/classification_report.json"
PLOTS_DIR = "plots/evaluate"


def main() -> None:
    batch_size = positive(load_params("evaluate"), "evaluate", "batch_size", int)
    classifier = TextClassifier(MODEL_DIR, "tensorflow", batch_size)
    names = classifier.labels

    metrics, reports = {}, {}
    with atomic_outputs(PLOTS_DIR, REPORT_FILE, METRICS_FILE) as (plots, report_out,
                                                                  metrics_out):
        plots.mkdir()
        for split in EVAL_SPLITS:
            data = read_split(RAW_DIR, split)
            if label_names(data) != names:
                raise PipelineError(f"{RAW_DIR}/{split}.parquet: labels {label_names(data)} "
                                    f"differ from the model's {names}")
            texts, labels = list(data["text"]), np.asarray(data["label"])
            logits = classifier.predict(texts).logits
            predicted = logits.argmax(axis=1)
            metrics[split] = split_scores(logits, labels)
            reports[split] = classification_report(
                labels, predicted, labels=range(len(names)), target_names=names,
                output_dict=True, zero_division=0)
            pd.DataFrame({"actual": [names[i] for i in labels],
                          "predicted": [names[i] for i in predicted],
                          "text": texts}).to_csv(plots / f"confusion_{split}.csv", index=False)
            display = ConfusionMatrixDisplay.from_predictions(
                labels, predicted, labels=range(len(names)), display_labels=names,
                normalize="true", values_format=".2f", cmap="Blues", xticks_rotation=45)
            display.ax_.set_title(f"Confusion matrix ({split}, normalised by actual label)")
            save_figure(display.figure_, plots / f"confusion_{split}.png")
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items()))
        report_out.write_text(json.dumps(reports, indent=2) + "\n")
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    exit_on_error(main)

"""Stage evaluate: score the trained model on the validation and test splits.

Writes metrics/evaluate.json (accuracy, loss, macro/weighted F1, nested by split),
metrics/classification_report.json (per-class precision/recall/F1, scikit-learn),
plots/evaluate/confusion_<split>.csv (actual,predicted rows for DVC's confusion template)
and plots/evaluate/confusion_<split>.png (row-normalised heat-map).
"""

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    classification_report,
    f1_score,
)
from transformers import AutoTokenizer  # noqa: E402

from stages.common import (  # noqa: E402
    MODEL_DIR,
    TOKENIZED_DIR,
    PipelineError,
    atomic_output,
    load_classifier,
    load_params,
    positive,
    predict_logits,
    read_split,
    run_stage,
    save_figure,
    softmax_metrics,
)

EVAL_SPLITS = ("validation", "test")
METRICS_FILE = "metrics/evaluate.json"
REPORT_FILE = "metrics/classification_report.json"
PLOTS_DIR = "plots/evaluate"


def main() -> None:
    batch_size = positive(load_params("evaluate"), "evaluate", "batch_size", int)
    if not (MODEL_DIR / "config.json").exists():
        raise PipelineError(f"{MODEL_DIR} holds no model: run the train stage first")
    model = load_classifier(MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]

    metrics, reports = {}, {}
    with atomic_output(PLOTS_DIR) as plots:
        plots.mkdir()
        for split in EVAL_SPLITS:
            data = read_split(TOKENIZED_DIR, split)
            labels = np.asarray(data["label"])
            logits = predict_logits(
                model, list(data["input_ids"]), batch_size, tokenizer.pad_token_id)
            predicted = logits.argmax(axis=1)
            loss, accuracy = softmax_metrics(logits, labels)
            metrics[split] = {
                "accuracy": round(accuracy, 6),
                "loss": round(loss, 6),
                "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 6),
                "weighted_f1": round(float(f1_score(labels, predicted, average="weighted")), 6),
            }
            reports[split] = classification_report(
                labels, predicted, labels=range(len(names)), target_names=names,
                output_dict=True, zero_division=0)
            pd.DataFrame({"actual": [names[i] for i in labels],
                          "predicted": [names[i] for i in predicted]}).to_csv(
                plots / f"confusion_{split}.csv", index=False)
            display = ConfusionMatrixDisplay.from_predictions(
                labels, predicted, labels=range(len(names)), display_labels=names,
                normalize="true", values_format=".2f", cmap="Blues", xticks_rotation=45)
            display.ax_.set_title(f"Confusion matrix ({split}, normalised by actual label)")
            save_figure(display.figure_, plots / f"confusion_{split}.png")
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items()))
        with atomic_output(REPORT_FILE) as out:
            out.write_text(json.dumps(reports, indent=2) + "\n")
        with atomic_output(METRICS_FILE) as out:
            out.write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    run_stage(main)

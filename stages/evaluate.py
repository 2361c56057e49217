"""Stage evaluate: score the trained model on the validation and test splits, and calibrate it.

The model is used as a user would use it: models/trained/ (its own tokenizer and max_length)
on the raw texts, through emotion.predict.TextClassifier. Calibration (emotion.metrics.calibration):
with evaluate.temperature_scaling, the temperature that minimises the validation split's
cross-entropy (test never takes part); stage package folds it into models/emotion/. Every
score is of the calibrated probabilities, which models/emotion/ gives; "uncalibrated" holds
the raw ones' loss and ECE.

Writes metrics/evaluate.json (per split: accuracy, loss, macro/weighted F1, ECE; the
temperature; the raw probabilities' loss and ECE; coverage and accuracy of the test labels
kept at each of evaluate.min_prob_thresholds), metrics/classification_report.json
(per-class precision/recall/F1, scikit-learn), and in plots/evaluate/: confusion_<split>.csv
(one row per example in dataset order: actual, predicted, text; DVC's confusion template
reads the first two, reviews pair the rows), confusion_<split>.png (row-normalised heat-map),
reliability_{uncalibrated,calibrated}.csv (test: accuracy against mean top probability in 15
equal-width bins) and risk_coverage_{uncalibrated,calibrated}.csv (test: accuracy of the
most confident labels kept against the share kept, and the threshold that keeps them).
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # before anything imports TensorFlow
    start_tensorflow()

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, classification_report  # noqa: E402

from emotion.data import check_label_names, read_split  # noqa: E402
from emotion.errors import exit_on_error  # noqa: E402
from emotion.files import atomic_outputs, save_figure  # noqa: E402
from emotion.metrics.calibration import (  # noqa: E402
    ECE_BINS,
    at_threshold,
    cross_entropy,
    expected_calibration_error,
    fit_temperature,
    probabilities,
    reliability,
    risk_coverage,
)
from emotion.metrics.scores import split_scores  # noqa: E402
from emotion.params import load_params, param, positive, probability_list  # noqa: E402
from emotion.paths import (  # noqa: E402
    CLASSIFICATION_REPORT,
    EVAL_SPLITS,
    EVALUATE_METRICS,
    EVALUATE_PLOTS,
    RAW_DIR,
    TRAINED_DIR,
)
from emotion.prediction.classifier import TextClassifier  # noqa: E402


def read_settings() -> dict:
    params = load_params("evaluate")
    thresholds = probability_list(params, "evaluate", "min_prob_thresholds")
    return {"batch_size": positive(params, "evaluate", "batch_size", int),
            "temperature_scaling": param(params, "evaluate", "temperature_scaling", bool),
            "thresholds": thresholds}


def main() -> None:
    settings = read_settings()
    classifier = TextClassifier(TRAINED_DIR, "tensorflow", settings["batch_size"])
    names = classifier.labels
    logits, labels, texts = {}, {}, {}
    for split in EVAL_SPLITS:
        data = read_split(RAW_DIR, split)
        check_label_names(data, names, RAW_DIR / f"{split}.parquet")
        texts[split], labels[split] = list(data["text"]), np.asarray(data["label"])
        logits[split] = classifier.predict(texts[split]).logits
    temperature = (fit_temperature(logits["validation"], labels["validation"])
                   if settings["temperature_scaling"] else 1.0)

    metrics, uncalibrated, reports = {}, {}, {}
    scores = {split: {"uncalibrated": probabilities(logits[split]),
                      "calibrated": probabilities(logits[split], temperature)}
              for split in EVAL_SPLITS}
    with atomic_outputs(EVALUATE_PLOTS, CLASSIFICATION_REPORT, EVALUATE_METRICS) as (
            plots, report_out, metrics_out):
        plots.mkdir()
        for split in EVAL_SPLITS:
            raw, calibrated = scores[split]["uncalibrated"], scores[split]["calibrated"]
            predicted = logits[split].argmax(axis=1)
            metrics[split] = {
                **split_scores(logits[split].astype(np.float64) / temperature, labels[split]),
                "ece": round(expected_calibration_error(calibrated, labels[split]), 6)}
            uncalibrated[split] = {
                "loss": round(cross_entropy(logits[split], labels[split]), 6),
                "ece": round(expected_calibration_error(raw, labels[split]), 6)}
            reports[split] = classification_report(
                labels[split], predicted, labels=range(len(names)), target_names=names,
                output_dict=True, zero_division=0)
            pd.DataFrame({"actual": [names[i] for i in labels[split]],
                          "predicted": [names[i] for i in predicted],
                          "text": texts[split]}).to_csv(plots / f"confusion_{split}.csv",
                                                        index=False)
            display = ConfusionMatrixDisplay.from_predictions(
                labels[split], predicted, labels=range(len(names)), display_labels=names,
                normalize="true", values_format=".2f", cmap="Blues", xticks_rotation=45)
            display.ax_.set_title(f"Confusion matrix ({split}, normalised by actual label)")
            save_figure(display.figure_, plots / f"confusion_{split}.png")
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items()))
        for kind, test in scores["test"].items():
            pd.DataFrame(reliability(test, labels["test"])).to_csv(
                plots / f"reliability_{kind}.csv", index=False)
            pd.DataFrame(risk_coverage(test, labels["test"])).to_csv(
                plots / f"risk_coverage_{kind}.csv", index=False)
        metrics.update(
            calibration={"enabled": settings["temperature_scaling"], "temperature": temperature,
                         "fitted_on": "validation", "ece_bins": ECE_BINS},
            uncalibrated=uncalibrated,
            min_prob={"test": {
                str(threshold): at_threshold(scores["test"]["calibrated"], labels["test"],
                                             threshold)
                for threshold in settings["thresholds"]}})
        report_out.write_text(json.dumps(reports, indent=2) + "\n")
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"temperature {temperature} (fitted on validation); test loss "
          f"{uncalibrated['test']['loss']:.4f} -> {metrics['test']['loss']:.4f}, "
          f"ECE {uncalibrated['test']['ece']:.4f} -> {metrics['test']['ece']:.4f}")


if __name__ == "__main__":
    exit_on_error(main)

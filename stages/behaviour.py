"""Stage behaviour: how the model behaves, not only how accurate it is (CheckList).

Expands the suite of behaviour/ (tests.yaml, lexicons.yaml; emotion.behaviour.suite) with
behaviour.seed, the invariance tests' originals sampled from the test split, and runs every
case on the runtime build (models/build/onnx, which stage publish makes models/onnx) as
emotion-predict runs it by default, and on its float32 and int8 graphs to compare them.
Writes metrics/behaviour.json (per test: cases, failures, failure rate; per capability; per
label for the MFTs; the share of out-of-scope statements labelled at each of
evaluate.min_prob_thresholds; int8 vs float32) and plots/behaviour/ (failure_rates.csv: a
test a row, plotted by dvc.yaml; failures.csv: a few failing examples of each test); publish
writes the headline into both model cards.
"""

from emotion.process import start_stage

if __name__ == "__main__":
    start_stage()

import csv
import json
from pathlib import Path

from emotion.behaviour.suite import load_suite
from emotion.behaviour.verdict import (
    failing_examples,
    scores_of,
    summarize,
    verdict_differences,
)
from emotion.data import read_split
from emotion.errors import exit_on_error
from emotion.files import atomic_outputs
from emotion.packaging.publish import ONNX_BUILD
from emotion.params import load_params, positive, probability_list
from emotion.paths import RAW_DIR
from emotion.prediction.classifier import TextClassifier

SUITE, METRICS, PLOTS = Path("behaviour"), Path("metrics/behaviour.json"), Path("plots/behaviour")
EXAMPLES = 5  # failing examples kept per test


def main() -> None:
    params = load_params("behaviour")
    seed = positive(params, "behaviour", "seed", int)
    originals = positive(params, "behaviour", "invariance_texts", int)
    thresholds = probability_list(load_params("evaluate"), "evaluate", "min_prob_thresholds")
    classifier = TextClassifier(ONNX_BUILD)
    labels = classifier.labels
    suite = load_suite(SUITE, labels, list(read_split(RAW_DIR, "test")["text"]),
                       originals, seed)
    scores = scores_of(suite, lambda texts: classifier.predict(texts).probabilities)
    metrics = {"runtime": classifier.runtime, **summarize(suite, scores, labels, thresholds)}
    float32, int8 = (scores_of(suite, lambda texts, runtime=runtime: TextClassifier(
        ONNX_BUILD, runtime=runtime).predict(texts).probabilities)
        for runtime in ("onnxruntime-float32", "onnxruntime-int8"))
    metrics["int8_vs_float32"] = verdict_differences(suite, int8, float32, labels)
    with atomic_outputs(METRICS, PLOTS) as (metrics_out, plots_out):
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
        plots_out.mkdir()
        with (plots_out / "failure_rates.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["test", "capability", "failure_rate"])
            writer.writerows([name, test["capability"], test["failure_rate"]]
                             for name, test in metrics["tests"].items() if test["type"] != "OOS")
        with (plots_out / "failures.csv").open("w", newline="") as file:
            writer = csv.DictWriter(file, ["test", "capability", "text", "expected", "got"])
            writer.writeheader()
            writer.writerows(failing_examples(suite, scores, labels, EXAMPLES))
    print(f"{metrics['cases']} cases on {metrics['runtime']}: " + ", ".join(
        f"{name} {figures['failure_rate']:.1%}"
        for name, figures in metrics["capabilities"].items()))


if __name__ == "__main__":
    exit_on_error(main)

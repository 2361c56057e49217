"""The model card (README.md of the published model folder), written from the pipeline's own
metrics and params, in the Hugging Face model-card format: YAML metadata with `model-index`
results on the test split, then the card's text."""

from __future__ import annotations

from typing import Any

import yaml

# Classes with the fewest training examples, called out as the weak ones when they are.
WEAK_CLASS_F1 = 0.85


def metadata(facts: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header."""
    test = facts["evaluate"]["test"]
    dataset = {"name": facts["dataset"], "type": facts["dataset"], "split": "test"}
    if facts.get("dataset_config"):
        dataset["config"] = facts["dataset_config"]
    if facts.get("dataset_revision"):
        dataset["revision"] = facts["dataset_revision"]
    return {
        "language": ["en"],
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["emotion", "tensorflow", "text-classification", "calibrated"],
        "base_model": facts["checkpoint"],
        "datasets": [facts["dataset"]],
        "metrics": ["accuracy", "f1"],
        "model-index": [{
            "name": facts["name"],
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": dataset,
                "metrics": [
                    {"type": "accuracy", "value": test["accuracy"], "name": "Accuracy"},
                    {"type": "f1", "value": test["macro_f1"], "name": "Macro F1",
                     "args": {"average": "macro"}},
                    {"type": "f1", "value": test["weighted_f1"], "name": "Weighted F1",
                     "args": {"average": "weighted"}},
                    {"type": "loss", "value": test["loss"], "name": "Cross-entropy"},
                    {"type": "ece", "value": test["ece"],
                     "name": "Expected calibration error (15 bins)"},
                ],
            }],
        }],
    }


def render(facts: dict[str, Any]) -> str:
    """The whole card. `facts`: name, checkpoint, checkpoint_revision, dataset,
    dataset_config, dataset_revision, labels, max_length, train (the train params),
    train_metrics, evaluate (metrics/evaluate.json), report
    (metrics/classification_report.json)."""
    evaluation, report = facts["evaluate"], facts["report"]["test"]
    return "\n".join([*_header(facts), *_use(facts["train"]),
                      *_evaluation(evaluation["test"], report, facts["labels"]),
                      *_calibration(evaluation), *_training(facts["train_metrics"], facts["train"]),
                      *_limits(facts, report)])


def _header(facts: dict[str, Any]) -> list[str]:
    labels = facts["labels"]
    revision = facts.get("checkpoint_revision")
    base = f"`{facts['checkpoint']}`" + (f" (revision `{revision}`)" if revision else "")
    dataset = f"`{facts['dataset']}`" + (
        f" (config `{facts['dataset_config']}`, revision `{facts['dataset_revision']}`)"
        if facts.get("dataset_revision") else "")
    return [
        "---",
        yaml.safe_dump(metadata(facts), sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {facts['name']}: emotion of English text ({len(labels)} labels)",
        "",
        f"Fine-tuned from {base} on {dataset} with TensorFlow and the `emotion` DVC "
        "pipeline. This card is written by the pipeline from its own metrics "
        "(stage `package`), so it describes exactly these weights.",
        "",
        f"Labels: {', '.join(f'`{label}`' for label in labels)}.",
        "",
    ]


def _use(train: dict[str, Any]) -> list[str]:
    return [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        "# torch_dtype=None: with transformers 4.54 and no PyTorch installed, pipeline() "
        "fails without it",
        'classify = pipeline("text-classification", model="<this folder>", framework="tf",',
        "                    torch_dtype=None)",
        'classify("i feel so happy today", truncation=True, top_k=None)  # every label\'s score',
        "```",
        "",
        "or `emotion-predict --model <this folder> --backend tensorflow \"some text\"`. "
        + ("The head is on the [CLS] pooler output, which pipeline() builds."
           if train.get("pooling", "cls") == "cls" else
           "The head is on mean-pooled token states (`pooling: mean`): load it with "
           "`emotion.predict.TextClassifier`; pipeline() would build a [CLS] head."),
        "",
    ]


def _evaluation(test: dict[str, Any], report: dict[str, Any], labels: list[str]) -> list[str]:
    return [
        "## Evaluation (test split)",
        "",
        "| accuracy | macro F1 | weighted F1 | cross-entropy | ECE |",
        "|---|---|---|---|---|",
        f"| {test['accuracy']:.4f} | {test['macro_f1']:.4f} | {test['weighted_f1']:.4f} "
        f"| {test['loss']:.4f} | {test['ece']:.4f} |",
        "",
        "| label | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[f"| {label} | {report[label]['precision']:.4f} | {report[label]['recall']:.4f} "
          f"| {report[label]['f1-score']:.4f} | {int(report[label]['support'])} |"
          for label in labels],
        "",
    ]


def _calibration(evaluation: dict[str, Any]) -> list[str]:
    test, calibration = evaluation["test"], evaluation["calibration"]
    raw = evaluation["uncalibrated"]["test"]
    temperature = calibration["temperature"]
    return [
        "## Calibration",
        "",
        (f"The probabilities are temperature-scaled: the logits are divided by T = "
         f"{temperature:.3f}, fitted on the validation split only (minimum cross-entropy), and "
         "folded into the classifier layer's weights, so every label is the unscaled model's."
         if calibration["enabled"] else
         "Temperature scaling is off (`evaluate.temperature_scaling: false`): these are the "
         "model's raw probabilities."),
        "Expected calibration error (ECE): the top probability in 15 equal-width bins, the "
        "mean over bins weighted by their share of examples of |accuracy - mean probability|.",
        "",
        "| test split | cross-entropy | ECE |",
        "|---|---|---|",
        f"| raw probabilities | {raw['loss']:.4f} | {raw['ece']:.4f} |",
        f"| this model | {test['loss']:.4f} | {test['ece']:.4f} |",
        "",
        "Keeping only labels whose top probability reaches a threshold "
        "(`emotion-predict --min-prob P`), on the test split:",
        "",
        "| threshold | share of texts labelled | accuracy of those labels |",
        "|---|---|---|",
        *[f"| {threshold} | {row['coverage']:.1%} | "
          + (f"{row['accuracy']:.4f} |" if "accuracy" in row else "- |")
          for threshold, row in evaluation["min_prob"]["test"].items()],
        "",
    ]


def _training(train_metrics: dict[str, Any], train: dict[str, Any]) -> list[str]:
    return [
        "## Training",
        "",
        f"Best epoch {train_metrics['best_epoch']} of {train_metrics['epochs']} by validation "
        f"loss (validation accuracy {train_metrics['validation']['accuracy']:.4f}). Params:",
        "",
        "| param | value |",
        "|---|---|",
        *[f"| train.{key} | {value} |" for key, value in train.items()],
        "",
    ]


def _limits(facts: dict[str, Any], report: dict[str, Any]) -> list[str]:
    labels = facts["labels"]
    weak = [label for label in labels if report[label]["f1-score"] < WEAK_CLASS_F1]
    return [
        "## Intended use and limits",
        "",
        f"- For English tweet-like short texts, one of the {len(labels)} labels above per text. "
        "Other domains, languages, long documents (cut at "
        f"{facts['max_length']} tokens) and mixed emotions are outside what it was measured on.",
        "- The dataset's labels were machine-generated (distant supervision from hashtags); "
        "its card asks for educational and research use only.",
        *([f"- Weak classes (test F1 below {WEAK_CLASS_F1}): " + ", ".join(
            f"`{label}` (F1 {report[label]['f1-score']:.2f}, {int(report[label]['support'])} "
            "test texts)" for label in weak) + ": the rarest labels in training; treat them "
            "with care."] if weak else []),
        "- Probabilities are calibrated on the validation split's distribution; on other text "
        "they can be over-confident again.",
        "",
    ]


# The fused kernels the runtime card counts (metrics/onnx.json's operators).
FUSED_KERNELS = ("Attention", "SkipLayerNormalization", "BiasGelu")


def render_runtime_card(metrics: dict[str, Any]) -> str:
    """README.md of the ONNX runtime folder, from metrics/onnx.json's figures (`metrics`):
    each runtime's scores on the test split against the TensorFlow model it was converted
    from, which runtime runs by default and why, and the --min-prob figures of each."""
    default, preferred = metrics["default"], metrics["preferred"]
    measured = [name for name, value in metrics.items()
                if isinstance(value, dict) and "test" in value]
    skipped = [name for name, value in metrics.items()
               if isinstance(value, dict) and value.get("measured") is False]
    thresholds = list(metrics[default]["min_prob"]["test"])
    ort = [name for name in measured if "operators" in metrics[name]]
    choice = (f"**{preferred[0]}** where it can run (OpenVINO installed, a CPU with bfloat16 "
              f"units), else **{default}**" if preferred else f"**{default}**")
    lines = [
        "# Emotion classifier: ONNX runtime folder",
        "",
        "Labels English text without TensorFlow: `emotion-predict --model "
        "<this folder> \"some text\"`, or `emotion.predict.TextClassifier(\"<this folder>\")`. "
        "Written by the pipeline's `onnx` stage from its own measurements (metrics/onnx.json), "
        "so it describes exactly these graphs. Probabilities are calibrated (the published "
        "model's temperature is in the graphs).",
        "",
        f"Runs on: {choice}; `--runtime` (`runtime=`) picks another, and `emotion-predict "
        f"--verbose` says which runs and why. The rule, on validation, measured on "
        f"{metrics['cpu']}: a runtime is as accurate as ONNX Runtime float32 where its "
        f"accuracy is within the pipeline's `onnx.int8_max_accuracy_drop` of float32's and a "
        f"text's scores do not depend on its batch; bfloat16 must also flip no more labels "
        f"and be calibrated no worse than int8. "
        + " ".join(f"{name}: {verdict}." for name, verdict in metrics["rule"].items()),
        "",
        "ONNX Runtime's graphs run its fused transformer kernels (" + ", ".join(
            f"{name} {metrics[ort[0]]['operators'][name]}" for name in FUSED_KERNELS) + "); "
        f"int8 stores its weights outside attention as 8-bit integers, a scale per block of "
        f"{metrics['int8_block_size']}, and quantizes each token's activations on its own. "
        "OpenVINO reads the float32 graph and computes its matmuls in bfloat16. On test, "
        "alone vs. in batches: " + "; ".join(
            f"{name} {metrics[name]['batch_independence']['test']['label_mismatches']} labels "
            f"differ, probabilities by up to "
            f"{metrics[name]['batch_independence']['test']['max_probability_difference']:.1g}"
            + (" (a check of a few texts found its scores depend on the batch on the machine "
               "that ran the stage, so there it runs one text at a time)"
               if metrics[name]["batch_size"] == 1 else "")
            for name in measured) + "." + "".join(
            f" {name} was not measured: {metrics[name]['why']}." for name in skipped),
        "",
        "## Test split",
        "",
        "| runtime | size MB | accuracy | macro F1 | cross-entropy | ECE | labels ≠ TF model "
        "| largest probability difference |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name}{' (default)' if name == default else ''} "
          f"| {metrics[name].get('size_mb', '-')} "
          f"| {metrics[name]['test']['accuracy']:.4f} | {metrics[name]['test']['macro_f1']:.4f} "
          f"| {metrics[name]['test']['loss']:.4f} | {metrics[name]['test']['ece']:.4f} "
          f"| {metrics[name]['test']['label_mismatches']} "
          f"| {metrics[name]['test']['max_probability_difference']:.2g} |" for name in measured],
        "",
        "## `--min-prob` on the test split",
        "",
        "Texts whose top probability is below the threshold get a null label; of the rest, "
        "the share kept (coverage) and their accuracy:",
        "",
        "| runtime | " + " | ".join(f"≥ {threshold}" for threshold in thresholds) + " |",
        "|---|" + "---|" * len(thresholds),
        *[f"| {name} | " + " | ".join(
            _kept(metrics[name]["min_prob"]["test"][threshold]) for threshold in thresholds)
          + " |" for name in measured],
        "",
        f"Token ids: {metrics['token_parity']['mismatches']} of "
        f"{metrics['token_parity']['texts']:,} texts differ from the training tokenizer's.",
        "",
    ]
    return "\n".join(lines)


def _kept(figures: dict[str, float]) -> str:
    if "accuracy" not in figures:
        return "none kept"
    return f"{figures['coverage']:.1%} at {figures['accuracy']:.1%} accuracy"


def render_behaviour(metrics: dict[str, Any], failing: list[dict[str, str]],
                     per_test: int = 2) -> str:
    """The cards' Behaviour section, from metrics/behaviour.json (`metrics`) and the failing
    examples the behaviour stage kept (`failing`, rows of plots/behaviour/failures.csv;
    `per_test` shown a test): failure rates per capability and test, what statements with no
    emotion get, int8 against float32."""
    tests = {name: test for name, test in metrics["tests"].items() if test["type"] != "OOS"}
    confident = metrics["out_of_scope"]["labelled_at"]
    differences = metrics["int8_vs_float32"]
    lines = [
        "## Behaviour",
        "",
        f"CheckList tests (Ribeiro et al., 2020) of the pipeline's `behaviour` stage: "
        f"{metrics['cases']:,} cases from templates and word lists, run on "
        f"{metrics['runtime']} (MFT: a simple case must get its label; INV: a change that "
        f"must not move the label; DIR: a change that must move one probability one way). "
        "Failure rate by capability: " + ", ".join(
            f"{name} {figures['failure_rate']:.1%} of {figures['cases']:,}"
            for name, figures in metrics["capabilities"].items()) + ".",
        "",
        "| test | type | capability | cases | failure rate |",
        "|---|---|---|---|---|",
        *[f"| {name} | {test['type']} | {test['capability']} | {test['cases']} "
          f"| {test['failure_rate']:.1%} |"
          for name, test in sorted(tests.items(), key=lambda item: -item[1]["failure_rate"])],
        "",
        "Statements with no emotion still get one of the six labels; the share labelled at "
        "each `--min-prob`: " + ", ".join(
            f"≥ {threshold}: {share:.1%}" for threshold, share in confident.items())
        + f" ({metrics['out_of_scope']['cases']} statements). The int8 and float32 graphs "
        f"label {differences['label_differences']} of the suite's {differences['texts']:,} "
        "texts differently.",
        "",
    ]
    if failing:
        lines += ["Failing examples:", "", "| test | text | expected | got |",
                  "|---|---|---|---|"]
        shown: dict[str, int] = {}
        for row in failing:
            if shown.get(row["test"], 0) < per_test:
                shown[row["test"]] = shown.get(row["test"], 0) + 1
                text = row["text"].replace("|", "\\|")
                lines.append(f"| {row['test']} | {text} | {row['expected']} | {row['got']} |")
        lines.append("")
    return "\n".join(lines)

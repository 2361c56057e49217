"""Stage onnx: the trained model as an ONNX runtime folder, for labelling text without
TensorFlow (emotion-predict's default backend), and which runtime runs it.

Writes models/build/onnx/ (stage publish makes it models/onnx/: fused float32 and int8
graphs, tokenizer.json, runtime.json, its card; see
emotion.prediction.runtime_folder) and metrics/onnx.json, what each runtime costs against the
TensorFlow model (emotion.predict's tensorflow backend, which evaluate scores) on the real data:
- token_parity: texts of all splits whose runtime token ids (the `tokenizers` library on
  tokenizer.json) or truncation flags differ from training's transformers tokenizer;
- per runtime (onnxruntime-float32, onnxruntime-int8, and openvino-bf16 where OpenVINO is
  installed and this CPU has bfloat16 units; else why not) and split (validation, test):
  accuracy, loss, macro/weighted F1, expected calibration error, labels that differ from the
  TensorFlow model's and the largest probability difference, and (vs_float32) from ONNX
  Runtime float32's; the coverage and accuracy of the test labels kept at each of
  evaluate.min_prob_thresholds; the batch size it runs with here (onnx.batch_size, or 1
  where the backend's load-time check found its scores depend on the batch on this CPU);
  on test, how far its scores move when each text runs alone instead of in such batches
  (batch_independence); for ONNX Runtime's graphs, their size and fused kernels;
- rule: per candidate, "passed" or why not; default and preferred, what runtime.json records.
The rule, chosen on validation (test is reported): int8 is the default where its accuracy is
within onnx.int8_max_accuracy_drop of float32's and its scores do not depend on the batch
(alone vs. batched on test: no label moved, probabilities within the runtime's
batch_tolerance); otherwise float32 is. openvino-bf16 is preferred where it meets the same
two conditions and its label flips against float32 and its ECE are no worse than int8's.
The folder's README.md, its model card, gives these figures and names the choice.
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # before anything imports TensorFlow
    start_tensorflow()

import json

import numpy as np

from emotion.data import check_label_names, read_split
from emotion.errors import exit_on_error
from emotion.files import atomic_outputs
from emotion.hardware import cpu_model
from emotion.metrics.calibration import at_threshold, expected_calibration_error
from emotion.metrics.scores import split_scores
from emotion.packaging.model_card import render_runtime_card
from emotion.packaging.onnx_folder import set_runtime_choice, write_runtime
from emotion.packaging.onnx_optimize import runtime_operators
from emotion.packaging.parity import prediction_parity, token_parity
from emotion.packaging.publish import ONNX_BUILD, PACKAGE_BUILD
from emotion.params import load_params, param, positive, probability_list
from emotion.paths import EVAL_SPLITS, ONNX_METRICS, RAW_DIR, SPLITS
from emotion.prediction.classifier import TextClassifier
from emotion.prediction.runtime_choice import cannot_run
from emotion.prediction.runtime_settings import RUNTIMES
from emotion.tensorflow_backend import TensorFlowBackend

FLOAT32, INT8, BF16 = "onnxruntime-float32", "onnxruntime-int8", "openvino-bf16"


def main() -> None:
    params = load_params("onnx")
    batch_size = positive(params, "onnx", "batch_size", int)
    block_size = positive(params, "onnx", "int8_block_size", int)
    max_drop = param(params, "onnx", "int8_max_accuracy_drop", float)
    thresholds = probability_list(load_params("evaluate"), "evaluate", "min_prob_thresholds")
    model = TensorFlowBackend(PACKAGE_BUILD, batch_size)
    trained = TextClassifier.of(model)
    data = {split: read_split(RAW_DIR, split) for split in SPLITS}
    texts = {split: list(data[split]["text"]) for split in SPLITS}
    labels = {split: np.asarray(data[split]["label"]) for split in EVAL_SPLITS}
    for split in EVAL_SPLITS:
        check_label_names(data[split], trained.labels, RAW_DIR / f"{split}.parquet")
    reference = {split: trained.predict(texts[split]) for split in EVAL_SPLITS}

    # The runtime folder and its metrics are moved into place together, or neither.
    with atomic_outputs(ONNX_BUILD, ONNX_METRICS) as (folder, metrics_out):
        write_runtime(model, folder, int8_block_size=block_size)
        metrics = {"cpu": cpu_model()}
        predicted = {}
        for runtime in (FLOAT32, INT8, BF16):
            if reason := cannot_run(runtime):
                metrics[runtime] = {"measured": False, "why": reason}
                continue
            classifier = TextClassifier(folder, batch_size=batch_size, runtime=runtime)
            if runtime == FLOAT32:
                metrics["token_parity"] = token_parity(  # ids and truncation flags alike
                    texts, lambda split: list(zip(*trained.encode(split))),
                    lambda split, runtime=classifier: list(zip(*runtime.encode(split))))
            figures = metrics[runtime] = {"batch_size": classifier.batch_size}
            if RUNTIMES[runtime].engine == "onnxruntime":
                graph = folder / RUNTIMES[runtime].graph
                figures.update(size_mb=round(graph.stat().st_size / 2**20, 2),
                               operators=runtime_operators(graph))
            for split in EVAL_SPLITS:
                predictions = predicted[runtime, split] = classifier.predict(texts[split])
                figures[split] = {
                    **split_scores(predictions.logits, labels[split]),
                    "ece": round(expected_calibration_error(predictions.probabilities,
                                                            labels[split]), 6),
                    **prediction_parity(predictions.top(), predictions.probabilities,
                                        reference[split].top(),
                                        reference[split].probabilities)}
            test = predicted[runtime, "test"]
            figures["min_prob"] = {"test": {  # as evaluate reports the TensorFlow model's
                str(threshold): at_threshold(test.probabilities, labels["test"], threshold)
                for threshold in thresholds}}
            alone = TextClassifier(folder, batch_size=1, runtime=runtime).predict(texts["test"])
            figures["batch_independence"] = {"test": prediction_parity(
                alone.top(), alone.probabilities, test.top(), test.probabilities)}
            if runtime != FLOAT32:
                figures["vs_float32"] = {split: prediction_parity(
                    predicted[runtime, split].top(), predicted[runtime, split].probabilities,
                    predicted[FLOAT32, split].top(), predicted[FLOAT32, split].probabilities)
                    for split in EVAL_SPLITS}
        metrics["rule"] = {INT8: as_accurate(metrics, INT8, batch_size, max_drop)}
        metrics["rule"][BF16] = as_accurate(metrics, BF16, batch_size, max_drop,
                                            no_worse_than=INT8)
        metrics["default"] = INT8 if metrics["rule"][INT8] == "passed" else FLOAT32
        metrics["preferred"] = [BF16] if metrics["rule"][BF16] == "passed" else []
        metrics["int8_block_size"] = block_size
        set_runtime_choice(folder, metrics["default"], metrics["preferred"])
        (folder / "README.md").write_text(render_runtime_card(metrics))
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


def as_accurate(metrics: dict, runtime: str, batch_size: int, max_drop: float,
                no_worse_than: str | None = None) -> str:
    """"passed" where `runtime` is as accurate as ONNX Runtime float32 by the stage's rule
    (and, with no_worse_than, flips no more labels and is calibrated no worse than that
    runtime on validation), else why not."""
    figures = metrics[runtime]
    if not figures.get("measured", True):
        return f"not measured: {figures['why']}"
    validation, float32 = figures["validation"], metrics[FLOAT32]["validation"]
    drop = round(float32["accuracy"] - validation["accuracy"], 6)
    moved = figures["batch_independence"]["test"]
    if drop > max_drop:
        return f"validation accuracy {drop:.4f} below float32's (onnx.int8_max_accuracy_drop)"
    if figures["batch_size"] != batch_size:
        return "its scores depend on the batch on this CPU (the backend's load-time check)"
    if (moved["label_mismatches"] or moved["max_probability_difference"]
            > RUNTIMES[runtime].batch_tolerance):
        return (f"alone vs. batched on test, {moved['label_mismatches']} labels moved, "
                f"probabilities by up to {moved['max_probability_difference']:.2g}")
    if no_worse_than and metrics[no_worse_than].get("measured", True):
        ours, theirs = validation, metrics[no_worse_than]["validation"]
        flips = figures["vs_float32"]["validation"]["label_mismatches"]
        their_flips = metrics[no_worse_than]["vs_float32"]["validation"]["label_mismatches"]
        if flips > their_flips or ours["ece"] > theirs["ece"]:
            return (f"on validation, {flips} labels differ from float32's and ECE "
                    f"{ours['ece']:.6f}, against {no_worse_than}'s {their_flips} and "
                    f"{theirs['ece']:.6f}")
    return "passed"


if __name__ == "__main__":
    exit_on_error(main)

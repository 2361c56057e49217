"""Stage onnx: the trained model as an ONNX runtime folder, for labelling text without
TensorFlow (emotion-predict's default backend).

Writes models/onnx/ (fused float32 and int8 graphs, tokenizer.json, runtime.json; see
emotion.prediction.onnx_backend) and metrics/onnx.json, what each graph costs against the
TensorFlow model (emotion.predict's tensorflow backend, which evaluate scores) on the real data:
- token_parity: texts of all splits whose runtime token ids (the `tokenizers` library on
  tokenizer.json) or truncation flags differ from training's transformers tokenizer;
- per variant (float32, int8) and split (validation, test): accuracy, loss, macro/weighted
  F1, expected calibration error, labels that differ from the TensorFlow model's and the
  largest probability difference; the coverage and accuracy of the test labels kept at each
  of evaluate.min_prob_thresholds (what `emotion-predict --min-prob` keeps with this graph);
  the graph's size; the fused kernels ONNX Runtime runs for it (operators); the batch size it
  runs with here (batch_size: onnx.batch_size, or 1 where OnnxBackend's load-time check found
  an int8 graph's scores depend on the batch on this CPU); and on test, how far its scores
  move when each text runs alone instead of in such batches (batch_independence);
- int8_vs_float32: per split, labels and probabilities that differ between the two graphs.
int8 becomes the folder's default variant only where its validation accuracy is within
onnx.int8_max_accuracy_drop of float32's (chosen on validation; test is reported) and its
scores do not depend on the batch (it runs in batches here, and on test, alone vs. batched:
BATCH_TOLERANCE, no label moved). The
folder's README.md, its model card, gives these figures and names the default.
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # before anything imports TensorFlow
    start_tensorflow()

import json

import numpy as np

from emotion.data import check_label_names, read_split
from emotion.errors import exit_on_error
from emotion.files import atomic_outputs
from emotion.metrics.calibration import at_threshold, expected_calibration_error
from emotion.metrics.scores import split_scores
from emotion.packaging.model_card import render_runtime_card
from emotion.packaging.onnx_folder import set_default_variant, write_runtime
from emotion.packaging.onnx_optimize import runtime_operators
from emotion.packaging.parity import prediction_parity, token_parity
from emotion.params import load_params, param, positive, probability_list
from emotion.paths import EVAL_SPLITS, MODEL_DIR, ONNX_DIR, ONNX_METRICS, RAW_DIR, SPLITS
from emotion.prediction.classifier import TextClassifier
from emotion.prediction.runtime_settings import VARIANT_FILES
from emotion.tensorflow_backend import TensorFlowBackend

# How far a text's probabilities may move between running alone and in a batch.
BATCH_TOLERANCE = 1e-6


def main() -> None:
    params = load_params("onnx")
    batch_size = positive(params, "onnx", "batch_size", int)
    block_size = positive(params, "onnx", "int8_block_size", int)
    max_drop = param(params, "onnx", "int8_max_accuracy_drop", float)
    thresholds = probability_list(load_params("evaluate"), "evaluate", "min_prob_thresholds")
    model = TensorFlowBackend(MODEL_DIR, batch_size)
    trained = TextClassifier.of(model)
    data = {split: read_split(RAW_DIR, split) for split in SPLITS}
    texts = {split: list(data[split]["text"]) for split in SPLITS}
    reference = {split: trained.predict(texts[split]) for split in EVAL_SPLITS}

    # The runtime folder and its metrics are moved into place together, or neither.
    with atomic_outputs(ONNX_DIR, ONNX_METRICS) as (folder, metrics_out):
        write_runtime(model, folder, int8_block_size=block_size)
        runtime = {variant: TextClassifier(folder, batch_size=batch_size, variant=variant)
                   for variant in VARIANT_FILES}
        metrics = {"token_parity": token_parity(  # ids and truncation flags alike
            texts, lambda split: list(zip(*trained.encode(split))),
            lambda split: list(zip(*runtime["float32"].encode(split))))}
        predicted = {}
        for variant, classifier in runtime.items():
            graph = folder / VARIANT_FILES[variant]
            metrics[variant] = {"size_mb": round(graph.stat().st_size / 2**20, 2),
                                "operators": runtime_operators(graph),
                                "batch_size": classifier.batch_size}
            for split in EVAL_SPLITS:
                check_label_names(data[split], trained.labels, RAW_DIR / f"{split}.parquet")
                predictions = classifier.predict(texts[split])
                predicted[variant, split] = predictions
                labels = np.asarray(data[split]["label"])
                metrics[variant][split] = {
                    **split_scores(predictions.logits, labels),
                    "ece": round(expected_calibration_error(predictions.probabilities, labels),
                                 6),
                    **prediction_parity(predictions.top(), predictions.probabilities,
                                        reference[split].top(),
                                        reference[split].probabilities)}
                if split == "test":  # as evaluate reports the TensorFlow model's
                    metrics[variant]["min_prob"] = {"test": {
                        str(threshold): at_threshold(predictions.probabilities, labels,
                                                     threshold)
                        for threshold in thresholds}}
                    alone = TextClassifier(folder, batch_size=1, variant=variant).predict(
                        texts[split])
                    metrics[variant]["batch_independence"] = {"test": prediction_parity(
                        alone.top(), alone.probabilities, predictions.top(),
                        predictions.probabilities)}
        metrics["int8_vs_float32"] = {split: prediction_parity(
            predicted["int8", split].top(), predicted["int8", split].probabilities,
            predicted["float32", split].top(), predicted["float32", split].probabilities)
            for split in EVAL_SPLITS}
        drop = round(metrics["float32"]["validation"]["accuracy"]
                     - metrics["int8"]["validation"]["accuracy"], 6)
        moved = metrics["int8"]["batch_independence"]["test"]
        batches = (metrics["int8"]["batch_size"] == batch_size  # else moved is 0 by design
                   and moved["label_mismatches"] == 0
                   and moved["max_probability_difference"] <= BATCH_TOLERANCE)
        metrics["default"] = "int8" if drop <= max_drop and batches else "float32"
        metrics["int8_block_size"] = block_size
        set_default_variant(folder, metrics["default"])
        (folder / "README.md").write_text(render_runtime_card(metrics, VARIANT_FILES))
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    exit_on_error(main)

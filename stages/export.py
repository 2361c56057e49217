"""Stage export: the trained model as a TensorFlow SavedModel that takes raw strings.

Writes models/serving/ (signature serving_default: text -> probabilities, label; tokenization
inside the graph, see emotion.packaging.saved_model) and metrics/export.json, the parity of
the SavedModel with the Python path (emotion.predict, the transformers tokenizer) on the real data:
- token ids: texts of all splits whose in-graph ids differ from the transformers tokenizer's;
- predictions: on the test split, labels that differ and the largest probability difference.
"""

from emotion.process import start_tensorflow

if __name__ == "__main__":  # before anything imports TensorFlow
    start_tensorflow()

import json

import numpy as np
import tensorflow as tf

from emotion.data import read_split
from emotion.errors import exit_on_error
from emotion.files import atomic_outputs
from emotion.packaging.parity import prediction_parity, token_parity
from emotion.packaging.publish import PACKAGE_BUILD
from emotion.packaging.saved_model import export
from emotion.params import load_params, positive
from emotion.paths import EXPORT_METRICS, RAW_DIR, SERVING_DIR, SPLITS
from emotion.prediction.classifier import TextClassifier
from emotion.tensorflow_backend import TensorFlowBackend


def in_batches(function, texts: list[str], batch_size: int) -> list[dict]:
    return [{key: value.numpy() for key, value in function(
        text=tf.constant(texts[start:start + batch_size])).items()}
        for start in range(0, len(texts), batch_size)]


def main() -> None:
    batch_size = positive(load_params("export"), "export", "batch_size", int)
    trained = TensorFlowBackend(PACKAGE_BUILD, batch_size)
    classifier = TextClassifier.of(trained)
    texts = {split: list(read_split(RAW_DIR, split)["text"]) for split in SPLITS}

    # The SavedModel and its parity metrics are moved into place together, or neither.
    with atomic_outputs(SERVING_DIR, EXPORT_METRICS) as (out, metrics_out):
        export(trained, out)
        saved = tf.saved_model.load(str(out))

        def graph_ids(split_texts: list[str]) -> list[list[int]]:
            return [row[mask.astype(bool)].tolist()
                    for batch in in_batches(saved.signatures["tokenize"], split_texts,
                                            batch_size)
                    for row, mask in zip(batch["input_ids"], batch["attention_mask"])]

        served = in_batches(saved.signatures["serving_default"], texts["test"], batch_size)
        probabilities = np.concatenate([batch["probabilities"] for batch in served])
        labels = [label.decode() for batch in served for label in batch["label"]]
        python = classifier.predict(texts["test"])

        metrics = {
            "token_parity": token_parity(texts, lambda split: classifier.encode(split)[0],
                                         graph_ids),
            "prediction_parity": {"texts": len(labels), **prediction_parity(
                labels, probabilities, python.top(), python.probabilities)},
        }
        metrics_out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    exit_on_error(main)

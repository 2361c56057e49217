"""The ONNX runtime folder without DVC: a tiny classifier converted by emotion.packaging.onnx_folder
and run by emotion.prediction.onnx_backend against the TensorFlow backend it came from (no stage, no
training: part of `make test-quick`)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import HARD_TEXTS, LABELS


@pytest.fixture(scope="module")
def folders(assets, tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained classifier saved as the train stage saves it (max_length 32), and its
    runtime folder."""
    from emotion.data import load_tokenizer
    from emotion.model import new_classifier
    from emotion.packaging.onnx_folder import write_runtime
    from emotion.tensorflow_backend import TensorFlowBackend

    root = tmp_path_factory.mktemp("onnx")
    model = new_classifier(str(assets["model"]), None, LABELS, pooling="cls",
                           classifier_dropout=0.0, classifier_init="glorot_uniform", seed=3)
    model.save_pretrained(str(root / "emotion"))
    tokenizer = load_tokenizer(str(assets["model"]))
    tokenizer.model_max_length = 32
    tokenizer.save_pretrained(str(root / "emotion"))
    write_runtime(TensorFlowBackend(root / "emotion"), root / "onnx", weight_type="QUInt8",
                  per_channel=True)
    return {"tensorflow": root / "emotion", "onnx": root / "onnx"}


TEXTS = [text for text in HARD_TEXTS if text.strip()]


def test_float32_graph_and_tokenizer_match_the_tensorflow_model(folders):
    from emotion.predict import TextClassifier

    trained = TextClassifier(folders["tensorflow"], "tensorflow")
    runtime = TextClassifier(folders["onnx"], variant="float32")
    assert runtime.labels == trained.labels == LABELS and runtime.max_length == 32
    assert runtime.backend.encode(TEXTS) == trained.backend.encode(TEXTS)  # ids, cut flags
    expected, got = trained.predict(TEXTS), runtime.predict(TEXTS)
    assert any(got.truncated) and got.truncated == expected.truncated
    assert np.abs(got.probabilities - expected.probabilities).max() < 1e-5


def test_int8_scores_of_a_text_do_not_depend_on_the_texts_beside_it(folders):
    from emotion.predict import TextClassifier

    int8 = TextClassifier(folders["onnx"], variant="int8", batch_size=64)
    together = int8.predict(TEXTS).logits
    alone = np.concatenate([int8.predict([text]).logits for text in TEXTS])
    assert np.array_equal(together, alone)
    # ...and they are int8's own: close to float32's, not equal.
    float32 = TextClassifier(folders["onnx"], variant="float32").predict(TEXTS).logits
    assert 0 < np.abs(together - float32).max() < 0.1

"""The ONNX runtime folder without DVC: a tiny classifier converted by emotion.packaging.onnx_folder
and run by emotion.prediction.onnx_backend against the TensorFlow backend it came from (no stage, no
training: part of `make test-quick`)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import HARD_TEXTS, LABELS, raw_logits


@pytest.fixture(scope="module")
def folders(runtime_folders) -> dict[str, Path]:
    return runtime_folders


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


def test_both_graphs_run_fused_kernels_and_int8_has_8_bit_weights(folders):
    from emotion.packaging.onnx_optimize import runtime_operators

    layers = 2  # the tiny BERT's
    float32, int8 = (runtime_operators(folders["onnx"] / name)
                     for name in ("model.onnx", "model.int8.onnx"))
    for operators in (float32, int8):
        assert operators["Attention"] == layers, operators
        assert operators["SkipLayerNormalization"] == 2 * layers  # after attention and FFN
        assert operators["LayerNormalization"] == 1  # the embeddings'
        assert operators["BiasGelu"] == layers
    # int8: every MatMul outside attention (3 a layer, pooler, classifier) has 8-bit weights.
    assert float32["MatMulNBits"] == 0 and float32["MatMul"] + float32["FusedMatMul"] > 0
    assert int8["MatMulNBits"] == 3 * layers + 2 and int8["MatMul"] == 0


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_scores_of_a_text_do_not_depend_on_the_texts_beside_it(folders, variant):
    """In a batch or alone, a text gets the same label and probabilities within 1e-6 (the
    kernels may round differently for other batch shapes; dynamically quantized int8 moved
    them by ~1e-3)."""
    from emotion.predict import TextClassifier

    classifier = TextClassifier(folders["onnx"], variant=variant, batch_size=64)
    assert classifier.batch_size == 64  # it runs batches
    together = classifier.predict(TEXTS)
    alone = [classifier.predict([text]) for text in TEXTS]
    assert together.top() == [prediction.top()[0] for prediction in alone]
    assert np.abs(together.probabilities - np.concatenate(
        [prediction.probabilities for prediction in alone])).max() <= 1e-6
    if variant == "int8":  # ...and the scores are int8's own: close to float32's, not equal
        float32 = TextClassifier(folders["onnx"], variant="float32").predict(TEXTS).logits
        assert 0 < np.abs(together.logits - float32).max() < 0.1


def test_an_int8_graph_whose_scores_depend_on_the_batch_runs_a_text_at_a_time(folders,
                                                                                tmp_path):
    """As on a CPU whose int8 kernels made scores depend on the batch: the folder's int8
    graph replaced by a dynamically quantized one (which does, ~4e-4 on this model). The
    backend's load-time probe finds it and runs one text at a time, so the scores of a text
    still do not depend on its neighbours."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from emotion.predict import TextClassifier

    folder = tmp_path / "onnx"
    shutil.copytree(folders["onnx"], folder)
    quantize_dynamic(str(folders["onnx"] / "model.onnx"), str(folder / "model.int8.onnx"),
                     weight_type=QuantType.QUInt8, extra_options={"DefaultTensorType": 1})
    int8 = TextClassifier(folder, variant="int8", batch_size=64)
    assert int8.batch_size == 1 and not int8.backend.batches
    int8.backend.batches = True  # what the probe saw
    assert not int8.backend.batch_independent()
    int8.backend.batches = False
    # What it gives is each text run alone, as a plain onnxruntime session runs it.
    alone = raw_logits(folder / "model.int8.onnx", int8.backend.encode(TEXTS)[0])
    assert np.abs(int8.predict(TEXTS).logits - alone).max() <= 1e-5


@pytest.mark.parametrize(("key", "value"), [
    ("labels", []), ("labels", "joy"), ("max_length", "long"), ("max_length", 1.5),
    ("pad_id", -1), ("truncation_side", "middle"), ("default", "int4"),
    ("int8_block_size", 0), ("format", 99)])
def test_runtime_settings_are_read_typed_and_a_bad_value_is_one_line(folders, tmp_path, key,
                                                                      value):
    """runtime.json is one typed record: each wrongly typed value is a PipelineError naming
    the file and the key (a non-numeric max_length once crashed emotion-serve's start-up),
    a newer format is refused, and a folder without a format (format 0) reads as before."""
    import json
    import shutil

    from emotion.errors import PipelineError
    from emotion.prediction.runtime_settings import FORMAT, RuntimeSettings

    folder = tmp_path / "onnx"
    shutil.copytree(folders["onnx"], folder)
    record = json.loads((folder / "runtime.json").read_text())
    assert record["format"] == FORMAT
    (folder / "runtime.json").write_text(json.dumps({**record, key: value}))
    with pytest.raises(PipelineError) as error:
        RuntimeSettings.read(folder)
    message = str(error.value)
    assert "\n" not in message and "runtime.json" in message and key in message
    del record["format"]
    (folder / "runtime.json").write_text(json.dumps(record))
    assert RuntimeSettings.read(folder).max_length == record["max_length"]

"""The ONNX runtime folder without DVC: a tiny classifier converted by emotion.packaging.onnx_folder
and run by emotion.prediction.onnx_backend against the TensorFlow backend it came from (no stage, no
training: part of `make test-quick`)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import HARD_TEXTS, LABELS, raw_logits, require


@pytest.fixture(scope="module")
def folders(runtime_folders) -> dict[str, Path]:
    return runtime_folders


TEXTS = [text for text in HARD_TEXTS if text.strip()]


def test_float32_graph_and_tokenizer_match_the_tensorflow_model(folders):
    from emotion.predict import TextClassifier

    trained = TextClassifier(folders["tensorflow"], "tensorflow")
    runtime = TextClassifier(folders["onnx"], runtime="onnxruntime-float32")
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


@pytest.mark.parametrize("runtime", ["onnxruntime-int8", "onnxruntime-float32"])
def test_scores_of_a_text_do_not_depend_on_the_texts_beside_it(folders, runtime):
    """In a batch or alone, a text gets the same label and probabilities within 1e-6 (the
    kernels may round differently for other batch shapes; dynamically quantized int8 moved
    them by ~1e-3)."""
    from emotion.predict import TextClassifier

    classifier = TextClassifier(folders["onnx"], runtime=runtime, batch_size=64)
    assert classifier.batch_size == 64  # it runs batches
    together = classifier.predict(TEXTS)
    alone = [classifier.predict([text]) for text in TEXTS]
    assert together.top() == [prediction.top()[0] for prediction in alone]
    assert np.abs(together.probabilities - np.concatenate(
        [prediction.probabilities for prediction in alone])).max() <= 1e-6
    if runtime == "onnxruntime-int8":  # ...and its scores are its own: near float32's, not equal
        float32 = TextClassifier(folders["onnx"], runtime="onnxruntime-float32").predict(
            TEXTS).logits
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
    int8 = TextClassifier(folder, runtime="onnxruntime-int8", batch_size=64)
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
    ("preferred", ["openvino-int4"]), ("preferred", "openvino-bf16"),
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


OPENVINO = ("openvino-float32", "openvino-bf16")


def runnable(runtime: str) -> None:
    """Skip where this CPU truly lacks bfloat16 units; fail in CI where OpenVINO is missing
    (make setup installs it)."""
    import importlib.util

    from emotion.hardware import has_bfloat16_units

    require(importlib.util.find_spec("openvino") is not None, "OpenVINO (make setup)")
    if runtime.endswith("bf16") and not has_bfloat16_units():
        pytest.skip("this CPU has no bfloat16 units (AVX512_BF16 or AMX)")


@pytest.mark.parametrize("runtime", OPENVINO)
def test_openvino_labels_as_onnx_runtime_float32_within_its_precision(folders, runtime):
    """OpenVINO reads the folder's fused float32 graph: in float32 its probabilities equal
    ONNX Runtime's within 1e-5; in bfloat16 (8 significant bits) within 0.002 (this untrained
    model's probabilities sit near 1/6, its top-two margins a few thousandths; the real
    model's bf16 moves them by ~0.04, measured by the onnx stage), and every label whose
    float32 margin exceeds twice that is the same. Batched, a text's scores stay within the
    runtime's batch tolerance of its scores alone, and the classifier runs batches."""
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_settings import RUNTIMES

    runnable(runtime)
    reference = TextClassifier(folders["onnx"], runtime="onnxruntime-float32").predict(TEXTS)
    classifier = TextClassifier(folders["onnx"], runtime=runtime, batch_size=64)
    assert classifier.runtime == runtime and classifier.batch_size == 64
    got = classifier.predict(TEXTS)
    difference = np.abs(got.probabilities - reference.probabilities).max()
    bound = 1e-5 if runtime == "openvino-float32" else 0.002
    assert difference <= bound
    ordered = np.sort(reference.probabilities, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * bound
    assert (got.logits.argmax(1) == reference.logits.argmax(1))[clear].all()
    if runtime == "openvino-float32":  # (this untrained model's margins can be below bf16's)
        assert clear.sum() >= len(TEXTS) // 2  # the label check is not vacuous
    if runtime == "openvino-bf16":  # ...and it computes in bfloat16, not float32
        assert difference > 1e-5
    alone = np.concatenate([classifier.predict([text]).probabilities for text in TEXTS])
    assert np.abs(alone - got.probabilities).max() <= RUNTIMES[runtime].batch_tolerance


def rewrite_settings(folder: Path, **changes) -> None:
    import json

    record = json.loads((folder / "runtime.json").read_text())
    (folder / "runtime.json").write_text(json.dumps({**record, **changes}))


def test_the_runtime_is_chosen_by_the_rule_and_each_fallback_says_why(folders, tmp_path,
                                                                      monkeypatch):
    """A folder whose rule passed openvino-bf16 runs it where OpenVINO is installed and the
    CPU has bfloat16 units, else its default, saying why; a CPU flag hidden by the test hook
    falls back; a folder whose rule passed nothing runs its default; a forced runtime that
    cannot run here is a one-line UsageError (exit 2); a format-1 folder's "int8" default
    reads as onnxruntime-int8."""
    import shutil

    from emotion.errors import UsageError
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_choice import cannot_run

    folder = tmp_path / "onnx"
    shutil.copytree(folders["onnx"], folder)
    rewrite_settings(folder, default="onnxruntime-int8", preferred=["openvino-bf16"])
    chosen = TextClassifier(folder)
    if cannot_run("openvino-bf16") is None:
        assert chosen.runtime == "openvino-bf16" and "can run here" in chosen.why
    else:
        assert chosen.runtime == "onnxruntime-int8"
        assert cannot_run("openvino-bf16") in chosen.why
    monkeypatch.setenv("EMOTION_HIDE_CPU_FLAGS", "avx512_bf16,amx_bf16")
    hidden = TextClassifier(folder)
    assert hidden.runtime == "onnxruntime-int8", hidden.why
    assert "passed the onnx stage's rule but" in hidden.why
    assert "no bfloat16 units" in hidden.why or "not installed" in hidden.why
    with pytest.raises(UsageError) as refused:
        TextClassifier(folder, runtime="openvino-bf16")
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert "openvino-bf16 cannot run here" in str(refused.value)
    monkeypatch.delenv("EMOTION_HIDE_CPU_FLAGS")
    rewrite_settings(folder, preferred=[])
    failed = TextClassifier(folder)
    assert failed.runtime == "onnxruntime-int8"
    assert "no faster runtime passed the onnx stage's rule" in failed.why
    rewrite_settings(folder, format=1, default="int8")
    assert TextClassifier(folder).runtime == "onnxruntime-int8"
    assert TextClassifier(folder, runtime="onnxruntime-float32").why == "asked for"


def test_openvino_sends_no_telemetry(folders, tmp_path):
    """OpenVINO's ONNX frontend would report usage to Intel (openvino_telemetry: a forked
    sender, ~/intel/ written): the backend turns it off. A process with its own home reads,
    compiles and runs the graph, and leaves nothing there."""
    import os
    import subprocess
    import sys

    runnable("openvino-float32")
    code = ("import os, sys; from emotion.predict import TextClassifier; "
            "forks = []; real = os.fork; "
            "os.fork = lambda: forks.append(1) or real(); "
            f"TextClassifier({str(folders['onnx'])!r}, runtime='openvino-float32')"
            ".predict(['i am glad']); print(len(forks), 'openvino_telemetry' in sys.modules "
            "and sys.modules['openvino_telemetry'] is not None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "False"]
    assert list(tmp_path.iterdir()) == []

"""Using a trained model: the `emotion-predict` command (on its default ONNX runtime folder,
and on the TensorFlow model folder), the prediction-only install and the exported raw-text
SavedModel, on the tiny model that the DVC pipeline trained in `dvc_repo`.

The command runs as the installed console script where its process is the point (arguments,
stdin, exit codes, stderr after TensorFlow's start-up), and otherwise as its module in this
process (the same code from argument parsing on, without TensorFlow's start-up each time)."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    HARD_TEXTS,
    LABELS,
    raw_logits,
    require,
    run_in_process,
    softmax,
    workspace_state,
)
from tokenizers import Tokenizer

PREDICT = shutil.which("emotion-predict", path=str(Path(sys.executable).parent))
F32, I8, BF16 = "onnxruntime-float32", "onnxruntime-int8", "openvino-bf16"


def predict(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
            process: bool = False) -> subprocess.CompletedProcess:
    """Run emotion-predict: as a user would (the installed console script) with process=True,
    else `python -m emotion.prediction.cli` in this process. Output comes back as bytes either
    way."""
    if not process:
        result = run_in_process("emotion.prediction.cli", cwd or Path.cwd(), list(args),
                                stdin=stdin)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.encode(), result.stderr.encode())
    assert PREDICT, "emotion-predict is not installed beside this Python (make setup)"
    return subprocess.run([PREDICT, *args], input=stdin, capture_output=True, cwd=cwd,
                          timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode()


def one_line_error(result: subprocess.CompletedProcess, *named: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    (message,) = [line for line in stderr.splitlines() if line.strip()]
    assert message.startswith("error: "), message
    for name in named:
        assert name in message, message
    return message


@pytest.fixture(scope="module")
def model(dvc_repo) -> Path:
    """The ONNX runtime folder (the onnx stage's), emotion-predict's default."""
    return dvc_repo[0] / "models/onnx"


@pytest.fixture(scope="module")
def tf_model(dvc_repo) -> Path:
    """The published model folder (the package stage's), for --backend tensorflow."""
    return dvc_repo[0] / "models/emotion"


def model_args(backend: str, model: Path, tf_model: Path) -> list[str]:
    return (["--model", str(model)] if backend == "onnx" else
            ["--backend", "tensorflow", "--model", str(tf_model)])


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("backend", ["onnx", "tensorflow"])
def test_labels_texts_from_arguments_as_table_and_jsonl(model, tf_model, backend):
    texts = ["i feel wonderful today", "this is so unfair"]
    args = model_args(backend, model, tf_model)
    records = jsonl(ok(predict(*args, *texts, process=True)))  # the console script, piped: jsonl
    assert [r["text"] for r in records] == texts
    # The scores are the graph's softmax that the chosen runtime runs, run here by plain
    # onnxruntime (TF within its measured parity; OpenVINO bf16, where this CPU runs it by
    # the folder's rule, within its precision: test_onnx_runtime), and the label is their top.
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_settings import RUNTIMES

    runtime = RUNTIMES[TextClassifier(model).runtime]
    graph = model / (runtime.graph if backend == "onnx" else "model.onnx")
    tolerance = {"tensorflow": 1e-4, "onnxruntime": 1e-6}.get(
        backend if backend == "tensorflow" else runtime.engine,
        2e-3 if runtime.precision == "bf16" else 1e-5)
    ids = [encoding.ids for encoding in Tokenizer.from_file(
        str(model / "tokenizer.json")).encode_batch(texts)]
    reference = softmax(raw_logits(graph, ids))
    for record, expected in zip(records, reference):
        assert [record["scores"][label] for label in LABELS] == pytest.approx(
            expected.tolist(), abs=tolerance)
        assert record["label"] == LABELS[expected.argmax()]
        assert "truncated" not in record
    table = ok(predict(*args, "--format", "table", *texts))
    rows = table.splitlines()[1:]
    assert len(rows) == 2
    for row, text, record in zip(rows, texts, records):  # the same label and top probability
        assert row.split(maxsplit=2) == [record["label"],
                                         f"{max(record['scores'].values()):.3f}", text]


def test_every_input_format_gives_the_same_predictions(model, tmp_path):
    texts = [text for text in HARD_TEXTS if text.strip() and "\n" not in text]
    expected = jsonl(ok(predict("--model", str(model), *texts)))
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    pd.DataFrame({"tweet": texts}).to_csv(tmp_path / "in.csv", index=False)
    pd.DataFrame({"tweet": texts}).to_json(tmp_path / "in.jsonl", orient="records",
                                          lines=True, force_ascii=False)
    pd.DataFrame({"tweet": texts}).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "strings.json").write_text(json.dumps(texts), encoding="utf-8")
    (tmp_path / "objects.json").write_text(json.dumps([{"tweet": t, "id": i} for i, t in
                                                       enumerate(texts)]), encoding="utf-8")
    # As spreadsheets and Windows editors save them: a UTF-8 byte-order mark first.
    for name in ("in.txt", "in.csv", "in.jsonl", "objects.json"):
        (tmp_path / f"bom-{name}").write_bytes(b"\xef\xbb\xbf" + (tmp_path / name).read_bytes())
    # Arguments, stdin and every file format: the same labels, and the same scores (to float
    # rounding: on the tensorflow backend, a few arguments run eagerly, streams traced).
    stdin = (tmp_path / "in.txt").read_bytes()
    outputs = {
        "stdin": ok(predict("--model", str(model), stdin=stdin, process=True)),
        "-": ok(predict("--model", str(model), "-", stdin=stdin)),
        "stdin with a byte-order mark": ok(predict("--model", str(model),
                                                   stdin=b"\xef\xbb\xbf" + stdin)),
    }
    for name in ("in.txt", "in.csv", "in.jsonl", "in.parquet", "strings.json", "objects.json",
                 "bom-in.txt", "bom-in.csv", "bom-in.jsonl", "bom-objects.json"):
        outputs[name] = ok(predict("--model", str(model), "--input", str(tmp_path / name),
                                   "--text-column", "tweet"))
    for name, out in outputs.items():
        records = jsonl(out)
        assert [(r["text"], r["label"]) for r in records] == [
            (r["text"], r["label"]) for r in expected], name
        for record, reference in zip(records, expected):
            assert record["scores"] == pytest.approx(reference["scores"], abs=1e-6), name
    assert len({outputs[name] for name in outputs}) == 1  # the stream paths agree exactly


def test_csv_output_and_atomic_output_file(model, tmp_path):
    texts = ["i am scared", "so happy, really", 'a "quoted" text']
    out = tmp_path / "labels.csv"
    result = predict("--model", str(model), "--format", "csv", "--output", str(out), *texts)
    assert ok(result) == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["text"] for row in rows] == texts
    assert list(rows[0]) == ["text", "label", "truncated", *LABELS]
    for row in rows:
        assert sum(float(row[label]) for label in LABELS) == pytest.approx(1, abs=1e-4)
    # A failing run (a bad line in the input) leaves the earlier output untouched.
    before = out.read_bytes()
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    one_line_error(predict("--model", str(model), "--input", str(tmp_path / "bad.jsonl"),
                           "--format", "csv", "--output", str(out)), "bad.jsonl line 2")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".staging-" in p.name] == []


def test_an_output_path_that_is_not_a_file_is_refused_and_left_alone(model, tmp_path):
    """-o replaces a regular file (through a symlink, its target), never anything else: a
    folder (with a user's files in it), a symlink to a folder or to nothing, a device."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "keep.txt").write_text("mine")
    (tmp_path / "to-folder").symlink_to(reports)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "labels.jsonl").write_text("old")
    (tmp_path / "to-file").symlink_to(tmp_path / "labels.jsonl")
    before = workspace_state(tmp_path)
    for path in (reports, tmp_path / "to-folder", tmp_path / "dangling", Path("/dev/null")):
        result = predict("--model", str(model), "-o", str(path), "i feel happy",
                         process=path == reports)
        assert result.returncode == 2
        assert one_line_error(result) == (f"error: {path}: exists and is not a regular file; "
                                          "it is left as it is (name a file to write)")
        assert workspace_state(tmp_path) == before
    ok(predict("--model", str(model), "-o", str(tmp_path / "to-file"), "i feel happy"))
    assert (tmp_path / "to-file").is_symlink()
    assert jsonl((tmp_path / "labels.jsonl").read_text())[0]["text"] == "i feel happy"


def test_empty_texts_are_skipped_or_kept_with_a_null_label(model):
    texts = ["i am glad", "", "   ", "i am lonely"]
    stdin = ("\n".join(texts) + "\n").encode()
    skipped = predict("--model", str(model), stdin=stdin)
    assert [r["text"] for r in jsonl(ok(skipped))] == ["i am glad", "i am lonely"]
    assert "skipped 2 empty" in skipped.stderr.decode()
    kept = jsonl(ok(predict("--model", str(model), "--keep-empty", stdin=stdin)))
    assert [r["text"] for r in kept] == texts
    assert [r["label"] is None for r in kept] == [False, True, True, False]


def test_min_prob_gives_uncertain_texts_a_null_label_in_every_format(model):
    texts = [text for text in HARD_TEXTS if text.strip() and "\n" not in text]
    plain = jsonl(ok(predict("--model", str(model), *texts)))
    tops = [max(record["scores"].values()) for record in plain]  # rounded to 7 decimals
    ordered = sorted(tops)
    # The threshold: halfway across the widest gap between two tops (at least some texts on
    # each side; the gap far wider than the 1e-7 rounding of the printed scores).
    widest = max(range(1, len(ordered)), key=lambda i: ordered[i] - ordered[i - 1])
    assert ordered[widest] - ordered[widest - 1] > 1e-6
    threshold = (ordered[widest - 1] + ordered[widest]) / 2
    below = [top < threshold for top in tops]
    assert 0 < sum(below) < len(texts)
    args = ["--model", str(model), "--min-prob", str(threshold), *texts]
    result = predict(*args)
    records = jsonl(ok(result))
    assert [r["label"] is None for r in records] == below
    for record, reference in zip(records, plain):  # the scores are still given
        assert record["scores"] == reference["scores"]
        assert record["label"] in (None, reference["label"])
    assert f"{sum(below)} of {len(texts)} text(s) below --min-prob" in result.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(ok(predict(*args, "--format", "csv")))))
    assert [row["label"] == "" for row in rows] == below
    for row, reference in zip(rows, plain):  # the scores are still given
        assert [float(row[label]) for label in LABELS] == pytest.approx(
            [reference["scores"][label] for label in LABELS], abs=1e-6)
    table = ok(predict(*args, "--format", "table")).splitlines()[1:]
    assert [row.split()[0] == "-" for row in table] == below
    assert [row.split()[1] for row in table] == [f"{top:.3f}" for top in tops]  # still shown
    bad = predict("--model", str(model), "--min-prob", "1.5", "hi")
    assert bad.returncode == 2 and "--min-prob must be in [0, 1]" in bad.stderr.decode()


def test_long_texts_are_truncated_as_in_training_and_flagged(model):
    long_text = " ".join(["cheerful"] * 60)  # 60 words, 62 tokens > max_length 32
    records = jsonl(ok(predict("--model", str(model), long_text, "i am glad")))
    assert records[0]["truncated"] is True and "truncated" not in records[1]
    # Cut exactly as in training: the same prediction as the text cut to 30 words + 2 specials.
    cut = jsonl(ok(predict("--model", str(model), " ".join(["cheerful"] * 30))))[0]
    assert records[0]["scores"] == pytest.approx(cut["scores"], abs=2e-7)


def test_invalid_utf8_is_a_clean_error_or_replaced(model, tmp_path):
    data = b"i am glad\nbroken \xff\xfe text\n"
    one_line_error(predict("--model", str(model), stdin=data, process=True), "stdin line 2",
                   "UTF-8")
    (tmp_path / "in.txt").write_bytes(data)
    one_line_error(predict("--model", str(model), "--input", str(tmp_path / "in.txt")),
                   "in.txt line 2")
    records = jsonl(ok(predict("--model", str(model), "--errors", "replace", stdin=data)))
    assert records[1]["text"] == "broken \ufffd\ufffd text"


@pytest.mark.parametrize("case", ["missing column", "missing file", "unknown format",
                                  "missing model", "damaged model", "damaged parquet",
                                  "json lines as .json", "json object", "json item"])
def test_bad_input_is_a_one_line_error(model, tf_model, tmp_path, case):
    (tmp_path / "in.csv").write_text("tweet\ni am glad\n")
    (tmp_path / "lines.json").write_text('{"text": "a"}\n{"text": "b"}\n')
    (tmp_path / "object.json").write_text('{"text": "a"}')
    (tmp_path / "items.json").write_text('["a", 3]')
    args, named = {
        "missing column": (["--input", str(tmp_path / "in.csv")], ["'text'", "tweet"]),
        "missing file": (["--input", str(tmp_path / "nope.txt")], ["nope.txt"]),
        "unknown format": (["--input", str(tmp_path / "in.xlsx")], [".xlsx"]),
        "missing model": (["--backend", "tensorflow", "--model", str(tmp_path / "no-model"),
                           "hi"], ["no-model"]),
        "damaged model": (["--backend", "tensorflow", "--model", str(tmp_path / "damaged"),
                           "hi"], ["damaged"]),
        "damaged parquet": (["--input", str(tmp_path / "bad.parquet")], ["bad.parquet"]),
        "json lines as .json": (["--input", str(tmp_path / "lines.json")],
                                ["lines.json", "line 2", ".jsonl"]),
        "json object": (["--input", str(tmp_path / "object.json")],
                        ["object.json: not a JSON array", ".jsonl"]),
        "json item": (["--input", str(tmp_path / "items.json")],
                      ["items.json item 2", "not a string: 3"]),
    }[case]
    shutil.copytree(tf_model, tmp_path / "damaged")
    weights = tmp_path / "damaged/tf_model.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    if "--model" not in args:
        args = ["--model", str(model), *args]
    one_line_error(predict(*args, process=case == "missing file"), *named)


def damage(folder: Path, case: str) -> str:
    """Break a copy of a pipeline workspace's models/onnx (beside its models/emotion) as
    `case` says; return the file the error must name."""
    onnx = folder / "models/onnx"
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_settings import RUNTIMES

    settings = json.loads((onnx / "runtime.json").read_text())
    runs = RUNTIMES[TextClassifier(onnx).runtime].graph  # the graph the command would run
    if case == "no runtime folder":
        shutil.rmtree(onnx)
        return "models/onnx"
    if case in ("damaged graph", "damaged tokenizer", "damaged runtime.json"):
        name = {"damaged graph": runs, "damaged tokenizer": "tokenizer.json",
                "damaged runtime.json": "runtime.json"}[case]
        (onnx / name).write_bytes((onnx / name).read_bytes()[:200])
        return f"models/onnx/{name}"
    if case == "other labels":
        settings["labels"] = [*settings["labels"][1:], settings["labels"][0]]
    elif case == "other max_length":
        settings["max_length"] += 1
    else:  # another vocabulary
        tokenizer = json.loads((onnx / "tokenizer.json").read_text())
        tokenizer["model"]["vocab"]["notaword"] = len(tokenizer["model"]["vocab"])
        (onnx / "tokenizer.json").write_text(json.dumps(tokenizer))
        return "models/onnx/tokenizer.json"
    (onnx / "runtime.json").write_text(json.dumps(settings))
    return "models/onnx/runtime.json"


@pytest.mark.parametrize("case", ["no runtime folder", "damaged graph", "damaged tokenizer",
                                  "damaged runtime.json", "other labels", "other max_length",
                                  "other vocabulary"])
def test_a_missing_damaged_or_stale_runtime_folder_is_a_one_line_error(dvc_repo, tmp_path,
                                                                       case):
    """emotion-predict's defaults in a workspace: models/onnx, checked against models/emotion.
    A problem is one line naming the file and `dvc repro`, and no output is written."""
    workspace = tmp_path / "workspace"
    for folder in ("models/onnx", "models/emotion"):
        shutil.copytree(dvc_repo[0] / folder, workspace / folder)
    named = damage(workspace, case)
    out = workspace / "labels.jsonl"
    result = predict("i am glad", "--output", str(out), cwd=workspace,
                     process=case == "damaged graph")
    one_line_error(result, named, "dvc repro")
    assert sorted(p.name for p in workspace.iterdir()) == ["models"]


@pytest.mark.parametrize("backend", ["tensorflow", "onnx float32"])
def test_predictions_match_the_evaluate_stage(dvc_repo, model, tf_model, backend):
    """The command labels the test split exactly as the pipeline scored it: the TensorFlow
    model, and its float32 ONNX graph."""
    root = dvc_repo[0]
    confusion = pd.read_csv(root / "plots/evaluate/confusion_test.csv", keep_default_na=False)
    stdin = ("\n".join(confusion["text"]) + "\n").encode()
    args = model_args(backend.split()[0], model, tf_model)
    if backend == "onnx float32":
        args += ["--runtime", "onnxruntime-float32"]
    records = jsonl(ok(predict(*args, stdin=stdin)))
    assert [r["label"] for r in records] == list(confusion["predicted"])


@pytest.mark.parametrize("backend", ["onnx", "tensorflow"])
def test_model_folder_carries_everything_prediction_needs(model, tf_model, tmp_path, backend):
    """A copy elsewhere (no params.yaml, no data, no repo) predicts the same."""
    source = model if backend == "onnx" else tf_model
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(source, copy)
    texts = ["i adore you", "i am terrified"]
    backend_args = ["--backend", backend]
    assert ok(predict(*backend_args, "--model", str(copy), *texts, cwd=tmp_path)) == ok(
        predict(*backend_args, "--model", str(source), *texts))
    if backend == "onnx":
        settings = json.loads((copy / "runtime.json").read_text())
        assert settings["labels"] == LABELS and settings["max_length"] == 32
        return
    config = json.loads((copy / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(6)] == LABELS
    assert config.get("pooling", "cls") == "cls"  # the head: the reference's, by default
    assert config["classifier_dropout"] == 0.0 and config["classifier_init"] == "glorot_uniform"
    assert json.loads((copy / "tokenizer_config.json").read_text())["model_max_length"] == 32


# --- The exported SavedModel ---------------------------------------------------------------

PLAIN_TF = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
model = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.stdin.read())
out = model.signatures["serving_default"](text=tf.constant(texts, dtype=tf.string))
ids = model.signatures["tokenize"](text=tf.constant(texts, dtype=tf.string))
assert not any(name.split(".")[0] in ("transformers", "emotion", "stages") for name in sys.modules)
print(json.dumps({"labels": [x.decode() for x in out["label"].numpy()],
                  "probabilities": out["probabilities"].numpy().tolist(),
                  "ids": [row[mask == 1].tolist() for row, mask in
                          zip(ids["input_ids"].numpy(), ids["attention_mask"].numpy())]}))
"""


def test_saved_model_in_a_plain_tensorflow_process_agrees_with_emotion_predict(dvc_repo,
                                                                              tf_model,
                                                                              tmp_path):
    model = tf_model
    root = dvc_repo[0]
    serving = root / "models/serving"
    texts = HARD_TEXTS
    result = subprocess.run([sys.executable, "-c", PLAIN_TF, str(serving)], text=True,
                            input=json.dumps(texts), capture_output=True, timeout=600,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout)
    python = [json.loads(line) for line in ok(predict(
        "--backend", "tensorflow", "--model", str(model),
        "--input", str(write_jsonl(tmp_path, texts)))).splitlines()]
    non_empty = [i for i, text in enumerate(texts) if text.strip()]
    assert [served["labels"][i] for i in non_empty] == [r["label"] for r in python]
    for i, record in zip(non_empty, python):
        assert served["probabilities"][i] == pytest.approx(
            [record["scores"][label] for label in LABELS], abs=1e-5)
    # Token ids equal the transformers tokenizer's, hard cases included.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    assert served["ids"] == tokenizer(texts, truncation=True)["input_ids"]
    # And the stage recorded full parity on the tiny dataset.
    parity = json.loads((root / "metrics/export.json").read_text())
    assert parity["token_parity"]["mismatches"] == 0
    assert parity["prediction_parity"]["label_mismatches"] == 0
    assert parity["prediction_parity"]["max_probability_difference"] < 1e-5


def write_jsonl(folder: Path, texts: list[str]) -> Path:
    path = folder / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


# --- The ONNX runtime folder and the prediction-only install -------------------------------

# A sitecustomize module (imported at every interpreter start) that writes, at exit, the
# names of every module the process imported.
RECORD_IMPORTS = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["EMOTION_TEST_MODULES"], "w").write(
    json.dumps(sorted(sys.modules))))
"""
TRAINING_STACK = {"tensorflow", "tf_keras", "keras", "transformers", "torch", "scipy",
                  "sklearn", "datasets", "pandas"}


def test_emotion_predict_runs_on_onnx_without_tensorflow_or_transformers(dvc_repo, tmp_path):
    """The real command with its defaults, in a pipeline workspace: models/onnx (checked
    against models/emotion) on the engine its rule picks here, and none of the training
    stack imported."""
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_settings import RUNTIMES

    engine = RUNTIMES[TextClassifier(dvc_repo[0] / "models/onnx").runtime].engine
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook/sitecustomize.py").write_text(RECORD_IMPORTS)
    modules = tmp_path / "modules.json"
    result = subprocess.run(
        [PREDICT, "i feel wonderful today", "this is so unfair"], cwd=dvc_repo[0],
        capture_output=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "hook"),
             "EMOTION_TEST_MODULES": str(modules)})
    assert [r["label"] in LABELS for r in jsonl(ok(result))] == [True, True]
    imported = {name.split(".")[0] for name in json.loads(modules.read_text())}
    assert {engine, "tokenizers", "emotion"} <= imported
    assert imported & TRAINING_STACK == set()
    assert ({"onnxruntime", "openvino"} - {engine}) & imported == set()  # only the one


def test_onnx_stage_measures_each_runtime_against_the_tensorflow_model(dvc_repo):
    import onnx

    from emotion.packaging.model_card import render_runtime_card
    from emotion.predict import TextClassifier
    from emotion.prediction.runtime_choice import cannot_run

    root = dvc_repo[0]
    metrics = json.loads((root / "metrics/onnx.json").read_text())
    evaluate = json.loads((root / "metrics/evaluate.json").read_text())
    assert metrics["token_parity"] == {"texts": 144, "mismatches": 0}
    for split in ("validation", "test"):
        float32 = metrics[F32][split]
        assert float32["label_mismatches"] == 0
        assert float32["max_probability_difference"] < 1e-5
        assert float32["accuracy"] == evaluate[split]["accuracy"]
        assert float32["loss"] == pytest.approx(evaluate[split]["loss"], abs=1e-5)
        assert float32["ece"] == pytest.approx(evaluate[split]["ece"], abs=1e-5)
        assert set(metrics[I8][split]) == set(float32)
        if not cannot_run(BF16):
            assert set(metrics[BF16][split]) == set(float32)
    # int8 is the default exactly when its validation accuracy is within 0.2 points and its
    # scores do not depend on the batch: it runs in batches on this CPU (OnnxBackend's
    # load-time check; float32 always does), and alone vs. batched nothing moves. Whether
    # int8's kernels batch on this CPU, measured here with plain onnxruntime sessions: the
    # stage ran it in batches exactly when they do.
    batch_size = yaml.safe_load((root / "params.yaml").read_text())["onnx"]["batch_size"]
    assert metrics[F32]["batch_size"] == batch_size
    texts = list(pd.read_parquet(root / "data/raw/test.parquet")["text"])
    ids = TextClassifier(root / "models/onnx").backend.encode(texts)[0]
    int8_graph = root / "models/onnx/model.int8.onnx"
    moved_here = np.abs(softmax(raw_logits(int8_graph, ids)) - softmax(
        raw_logits(int8_graph, ids, batch_size=batch_size))).max()
    assert metrics[I8]["batch_size"] == (batch_size if moved_here <= 1e-6 else 1)
    drop = metrics[F32]["validation"]["accuracy"] - metrics[I8]["validation"][
        "accuracy"]
    moved = metrics[I8]["batch_independence"]["test"]
    expected = (I8 if round(drop, 6) <= 0.002 and metrics[I8]["batch_size"] > 1
                and moved["label_mismatches"] == 0
                and moved["max_probability_difference"] <= 1e-6 else F32)
    settings = json.loads((root / "models/onnx/runtime.json").read_text())
    assert metrics["default"] == settings["default"] == expected
    # The int8 graph computes with 8-bit weights, and is smaller; both run fused kernels,
    # as the stage counted them; and a text's scores do not move when it runs alone.
    graph = onnx.load(str(root / "models/onnx/model.int8.onnx"))
    assert "MatMulNBits" in {node.op_type for node in graph.graph.node}
    assert metrics[I8]["size_mb"] < metrics[F32]["size_mb"]
    assert metrics[I8]["operators"]["MatMulNBits"] > 0
    for runtime in (F32, I8):
        assert metrics[runtime]["operators"]["Attention"] > 0
        moved = metrics[runtime]["batch_independence"]["test"]
        assert moved["label_mismatches"] == 0 and moved["max_probability_difference"] <= 1e-6
    validation = list(pd.read_parquet(root / "data/raw/validation.parquet")["text"])
    runtimes = [runtime for runtime in (F32, I8, BF16) if not cannot_run(runtime)]
    top = {runtime: TextClassifier(root / "models/onnx", runtime=runtime).predict(
        validation).top() for runtime in runtimes}
    for runtime in runtimes[1:]:
        flips = sum(a != b for a, b in zip(top[runtime], top[F32]))
        assert metrics[runtime]["vs_float32"]["validation"]["label_mismatches"] == flips
    # openvino-bf16 is measured where it can run, and preferred exactly where it passed
    # the rule: int8's conditions, and no more flips and no worse ECE than int8's.
    if cannot_run(BF16):
        assert metrics[BF16] == {"measured": False, "why": cannot_run(BF16)}
        assert metrics["rule"][BF16] == f"not measured: {cannot_run(BF16)}"
    else:
        bf16, int8 = metrics[BF16], metrics[I8]
        moved = bf16["batch_independence"]["test"]
        passed = (round(metrics[F32]["validation"]["accuracy"]
                        - bf16["validation"]["accuracy"], 6) <= 0.002
                  and bf16["batch_size"] == batch_size and moved["label_mismatches"] == 0
                  and moved["max_probability_difference"] <= 0.02
                  and bf16["vs_float32"]["validation"]["label_mismatches"]
                  <= int8["vs_float32"]["validation"]["label_mismatches"]
                  and bf16["validation"]["ece"] <= int8["validation"]["ece"])
        assert (metrics["rule"][BF16] == "passed") == passed, metrics["rule"]
    assert metrics["preferred"] == settings.get("preferred") == (
        [BF16] if metrics["rule"][BF16] == "passed" else [])
    # What the stage measured is what each graph gives from Python: accuracy, calibration
    # and what --min-prob keeps, at evaluate's thresholds (float32's equal evaluate's).
    test = pd.read_parquet(root / "data/raw/test.parquet")
    labels = test["label"].to_numpy()
    thresholds = yaml.safe_load((root / "params.yaml").read_text())["evaluate"][
        "min_prob_thresholds"]
    assert list(metrics[F32]["min_prob"]["test"]) == [str(t) for t in thresholds]
    for threshold, figures in evaluate["min_prob"]["test"].items():  # TF's, within one text
        # of a top probability that parity (< 1e-5) could move across the threshold
        assert metrics[F32]["min_prob"]["test"][threshold]["coverage"] == pytest.approx(
            figures["coverage"], abs=1 / len(test))
    for runtime in runtimes:
        scores = TextClassifier(root / "models/onnx", runtime=runtime).predict(
            list(test["text"])).probabilities
        assert (scores.argmax(axis=1) == labels).mean() == pytest.approx(
            metrics[runtime]["test"]["accuracy"], abs=1e-6)
        assert reference_ece(scores, labels) == pytest.approx(
            metrics[runtime]["test"]["ece"], abs=1e-6)
        for threshold in thresholds:
            kept = scores.max(axis=1) >= threshold
            figures = metrics[runtime]["min_prob"]["test"][str(threshold)]
            assert figures["coverage"] == pytest.approx(kept.mean(), abs=1e-6)
            if kept.any():
                assert figures["accuracy"] == pytest.approx(
                    (scores.argmax(axis=1) == labels)[kept].mean(), abs=1e-6)
    # The folder's model card names what runs and gives each runtime's figures.
    card = (root / "models/onnx/README.md").read_text()
    assert f"Runs on: **{(metrics['preferred'] or [metrics['default']])[0]}**" in card
    for runtime in runtimes:
        test_figures = metrics[runtime]["test"]
        figures = (f"| {test_figures['accuracy']:.4f} | {test_figures['macro_f1']:.4f} "
                   f"| {test_figures['loss']:.4f} | {test_figures['ece']:.4f} |")
        assert [line for line in card.splitlines()
                if line.startswith(f"| {runtime}") and figures in line], card
    # It says so where int8 ran one text at a time, its scores depending on the batch there.
    assert ("there it runs one text at a time" in card) == (metrics[I8]["batch_size"] == 1)
    fallback = {**metrics, I8: {**metrics[I8], "batch_size": 1}}
    for figures in (metrics, fallback):
        one_at_a_time = "there it runs one text at a time" in render_runtime_card(figures)
        assert one_at_a_time == (1 in (figures[name].get("batch_size") for name in runtimes))


def reference_ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error written from its definition (15 equal-width bins of the
    top probability, (0, 1/15], (1/15, 2/15], ...), apart from the library's."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return total


PREDICT_VENV = Path(__file__).resolve().parents[1] / ".venv-predict"


def test_the_prediction_only_install_labels_text_as_the_full_one(model, tmp_path):
    """`make setup-predict` (.venv-predict: requirements-predict.txt, no training stack)
    labels text exactly as the full install's emotion-predict does."""
    command = PREDICT_VENV / "bin/emotion-predict"
    require(command.exists(), "the prediction-only install (make setup-predict)")
    texts = ["i feel wonderful today", "i am so nervous", " ".join(["cheerful"] * 60)]
    light = subprocess.run([command, "--model", str(model), *texts], capture_output=True,
                           cwd=tmp_path, timeout=600)
    # The same runtime as the full install's: the folder's default (the light install has
    # no OpenVINO, which the full one may prefer).
    default = json.loads((model / "runtime.json").read_text())["default"]
    assert ok(light) == ok(predict("--model", str(model), "--runtime", default, *texts))
    installed = subprocess.run(
        [PREDICT_VENV / "bin/python", "-c", "import importlib.util, sys; print(sorted(name for "
         "name in sys.argv[1:] if importlib.util.find_spec(name)))", *TRAINING_STACK],
        capture_output=True, text=True, check=True)
    assert installed.stdout.strip() == "[]"
    # Installed from the built wheel, as `pip install ".[predict]"` would: the library from
    # site-packages, and the dependencies the package itself declares.
    package = json.loads(subprocess.run(
        [PREDICT_VENV / "bin/python", "-c", "import json, emotion, importlib.metadata as m; "
         "print(json.dumps([emotion.__file__, m.requires('emotion-pipeline')]))"],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert "/site-packages/emotion/" in package[0]
    declared = {re.split(r"[<>=;\[ ]", spec)[0] for spec in package[1]
                if "extra ==" not in spec or 'extra == "predict"' in spec}
    assert {"onnxruntime", "tokenizers", "numpy", "tqdm", "pyarrow"} <= declared


def test_without_the_openvino_extra_the_choice_falls_back_and_says_why(runtime_folders,
                                                                        tmp_path):
    """The prediction-only install lacks OpenVINO: a folder whose rule passed openvino-bf16
    runs its default there, and --verbose says why; forcing openvino-bf16 is one line, exit
    2."""
    command = PREDICT_VENV / "bin/emotion-predict"
    require(command.exists(), "the prediction-only install (make setup-predict)")
    folder = tmp_path / "onnx"
    shutil.copytree(runtime_folders["onnx"], folder)
    settings = json.loads((folder / "runtime.json").read_text())
    (folder / "runtime.json").write_text(json.dumps(
        {**settings, "default": I8, "preferred": [BF16]}))
    light = subprocess.run([command, "--verbose", "--model", str(folder), "i am glad"],
                           capture_output=True, text=True, timeout=120)
    assert light.returncode == 0, light.stderr
    assert (f"runtime: {I8} (the folder's default ({BF16} passed the onnx stage's rule but "
            "OpenVINO is not installed") in light.stderr
    forced = subprocess.run([command, "--runtime", BF16, "--model", str(folder), "hi"],
                            capture_output=True, text=True, timeout=120)
    assert forced.returncode == 2 and forced.stdout == ""
    assert forced.stderr == (f"error: runtime {BF16} cannot run here: OpenVINO is not "
                             "installed (pip install '.[openvino]')\n")

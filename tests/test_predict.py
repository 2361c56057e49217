"""Using a trained model: the `emotion-predict` command and the exported raw-text SavedModel,
on the tiny model that the DVC pipeline trained in `dvc_repo`.

The command runs as the installed console script where its process is the point (arguments,
stdin, exit codes, stderr after TensorFlow's start-up), and otherwise as its module in this
process (the same code from argument parsing on, without TensorFlow's start-up each time)."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import HARD_TEXTS, LABELS, run_in_process

PREDICT = shutil.which("emotion-predict", path=str(Path(sys.executable).parent))


def predict(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
            process: bool = False) -> subprocess.CompletedProcess:
    """Run emotion-predict: as a user would (the installed console script) with process=True,
    else `python -m emotion.cli` in this process. Output comes back as bytes either way."""
    if not process:
        result = run_in_process("emotion.cli", cwd or Path.cwd(), list(args), stdin=stdin)
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
    return dvc_repo[0] / "models/emotion"


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_labels_texts_from_arguments_as_table_and_jsonl(model):
    texts = ["i feel wonderful today", "this is so unfair"]
    table = ok(predict("--model", str(model), "--format", "table", *texts, process=True))
    rows = table.splitlines()[1:]
    assert len(rows) == 2
    for row, text in zip(rows, texts):
        label, probability, shown = row.split(maxsplit=2)
        assert label in LABELS and 1 / 6 <= float(probability) <= 1 and shown == text
    records = jsonl(ok(predict("--model", str(model), *texts, process=True)))  # piped: jsonl
    assert [r["text"] for r in records] == texts
    for record in records:
        assert set(record["scores"]) == set(LABELS)
        assert sum(record["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert record["label"] == max(record["scores"], key=record["scores"].get)
        assert "truncated" not in record


def test_every_input_format_gives_the_same_predictions(model, tmp_path):
    texts = [text for text in HARD_TEXTS if text.strip() and "\n" not in text]
    expected = jsonl(ok(predict("--model", str(model), *texts)))
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    pd.DataFrame({"tweet": texts}).to_csv(tmp_path / "in.csv", index=False)
    pd.DataFrame({"tweet": texts}).to_json(tmp_path / "in.jsonl", orient="records",
                                          lines=True, force_ascii=False)
    pd.DataFrame({"tweet": texts}).to_parquet(tmp_path / "in.parquet")
    # A few texts given as arguments run eagerly, streams through the traced graph: the same
    # labels, and scores equal up to float rounding.
    outputs = {
        "stdin": ok(predict("--model", str(model), stdin=(tmp_path / "in.txt").read_bytes(),
                            process=True)),
        "-": ok(predict("--model", str(model), "-", stdin=(tmp_path / "in.txt").read_bytes())),
    }
    for name in ("in.txt", "in.csv", "in.jsonl", "in.parquet"):
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


def test_empty_texts_are_skipped_or_kept_with_a_null_label(model):
    texts = ["i am glad", "", "   ", "i am lonely"]
    stdin = ("\n".join(texts) + "\n").encode()
    skipped = predict("--model", str(model), stdin=stdin)
    assert [r["text"] for r in jsonl(ok(skipped))] == ["i am glad", "i am lonely"]
    assert "skipped 2 empty" in skipped.stderr.decode()
    kept = jsonl(ok(predict("--model", str(model), "--keep-empty", stdin=stdin)))
    assert [r["text"] for r in kept] == texts
    assert [r["label"] is None for r in kept] == [False, True, True, False]


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
                                  "missing model", "damaged model", "damaged parquet"])
def test_bad_input_is_a_one_line_error(model, tmp_path, case):
    (tmp_path / "in.csv").write_text("tweet\ni am glad\n")
    args, named = {
        "missing column": (["--input", str(tmp_path / "in.csv")], ["'text'", "tweet"]),
        "missing file": (["--input", str(tmp_path / "nope.txt")], ["nope.txt"]),
        "unknown format": (["--input", str(tmp_path / "in.xlsx")], [".xlsx"]),
        "missing model": (["--model", str(tmp_path / "no-model"), "hi"], ["no-model"]),
        "damaged model": (["--model", str(tmp_path / "damaged"), "hi"], ["damaged"]),
        "damaged parquet": (["--input", str(tmp_path / "bad.parquet")], ["bad.parquet"]),
    }[case]
    shutil.copytree(model, tmp_path / "damaged")
    weights = tmp_path / "damaged/tf_model.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    if "--model" not in args:
        args = ["--model", str(model), *args]
    one_line_error(predict(*args, process=case == "missing file"), *named)


def test_predictions_match_the_evaluate_stage(dvc_repo, model):
    """The command labels the test split exactly as the pipeline scored it."""
    root = dvc_repo[0]
    confusion = pd.read_csv(root / "plots/evaluate/confusion_test.csv", keep_default_na=False)
    stdin = ("\n".join(confusion["text"]) + "\n").encode()
    records = jsonl(ok(predict("--model", str(model), stdin=stdin)))
    assert [r["label"] for r in records] == list(confusion["predicted"])


def test_model_folder_carries_everything_prediction_needs(model, tmp_path):
    """A copy elsewhere (no params.yaml, no data, no repo) predicts the same."""
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, copy)
    texts = ["i adore you", "i am terrified"]
    assert ok(predict("--model", str(copy), *texts, cwd=tmp_path)) == ok(
        predict("--model", str(model), *texts))
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


def test_saved_model_in_a_plain_tensorflow_process_agrees_with_emotion_predict(dvc_repo, model,
                                                                              tmp_path):
    root = dvc_repo[0]
    serving = root / "models/serving"
    texts = HARD_TEXTS
    result = subprocess.run([sys.executable, "-c", PLAIN_TF, str(serving)], text=True,
                            input=json.dumps(texts), capture_output=True, timeout=600,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout)
    python = [json.loads(line) for line in ok(predict(
        "--model", str(model), "--input", str(write_jsonl(tmp_path, texts)))).splitlines()]
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

"""What emotion-predict reads (emotion/prediction/readers.py), tried on the inputs the world
sends: property-based tests (Hypothesis, seeded and bounded: tests/conftest.py) that any texts
written by the usual writers of each format come back exactly, in order, one per record, and
that any bytes give texts or a one-line error, never a traceback; then the defects such inputs
found, one test each; and the same contract through the real command on a tiny ONNX model."""

import csv
import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_in_process
from hypothesis import given, settings
from hypothesis import strategies as st

from emotion.errors import PipelineError
from emotion.prediction import readers

# Any Unicode text but surrogates (which no UTF-8 file holds): newlines, quotes, commas, tabs,
# NUL, byte-order marks, control and combining characters among them.
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
TEXTS = st.lists(TEXT, max_size=12)
ONE_LINE_TEXTS = st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"),
                                  max_size=40), max_size=12)


def read(reader, data: bytes, *args) -> list[str]:
    return list(reader(io.BytesIO(data), "in", *args))


def error_of(reader, data: bytes, *args) -> str:
    with pytest.raises(PipelineError) as error:
        read(reader, data, *args)
    message = str(error.value)
    assert "\n" not in message
    return message


# --- Any texts, written as each format's writers write them, come back exactly ---------------


@given(ONE_LINE_TEXTS, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans())
def test_plain_lines_come_back_exactly(texts, ending, bom, last_ending):
    data = "".join(text + ending for text in texts)
    if texts and texts[-1] and not last_ending:
        data = data.removesuffix(ending)  # a last line without its line break still counts
    expected = list(texts)
    if not bom and expected:  # a byte-order mark at the start is the file's, not a text's
        expected[0] = expected[0].removeprefix("\ufeff")
    assert read(readers.read_txt, ("\ufeff" if bom else "").encode() + data.encode(),
                "strict") == expected


@given(TEXTS, st.integers(0, 2), st.sampled_from([",", "\t"]), st.booleans())
def test_csv_and_tsv_from_the_csv_module_come_back_exactly(texts, others, delimiter, bom):
    stream = io.StringIO(newline="")
    writer = csv.writer(stream, delimiter=delimiter)
    writer.writerow(["id"] * (others > 0) + ["text"] + ["note"] * (others > 1))
    for number, text in enumerate(texts):
        writer.writerow([str(number)] * (others > 0) + [text] + [text[::-1]] * (others > 1))
    data = ("\ufeff" if bom else "").encode() + stream.getvalue().encode()
    reader = readers.read_csv if delimiter == "," else readers.read_tsv
    assert read(reader, data, "text", "strict") == texts


# pandas writes \n line endings and then leaves a lone \r unquoted (as the csv module does
# with lineterminator="\n"), so no reader can tell it from a line break: texts without \r.
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=40),
                max_size=12), st.booleans())
def test_csv_from_pandas_comes_back_exactly(texts, with_index):
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object), "n": range(len(texts))})
    data = frame.to_csv(index=with_index).encode()
    assert read(readers.read_csv, data, "text", "strict") == texts


@given(TEXTS, st.booleans(), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_json_lines_and_arrays_come_back_exactly(texts, as_objects, ascii_only, ending):
    values = [{"id": 1, "text": text} if as_objects else text for text in texts]
    lines = ending.join(json.dumps(value, ensure_ascii=ascii_only) for value in values)
    assert read(readers.read_jsonl, lines.encode(), "text", "strict") == texts
    array = json.dumps(values, ensure_ascii=ascii_only, indent=1 if as_objects else None)
    assert read(readers.read_json, array.encode(), "text", "strict") == texts


@settings(max_examples=40)
@given(TEXTS, st.booleans())
def test_parquet_comes_back_exactly(tmp_path_factory, texts, dictionary):
    path = tmp_path_factory.mktemp("parquet") / "in.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path,
                   use_dictionary=dictionary)
    assert list(readers.read_parquet(path, "text", "strict")) == texts


# --- Any bytes: texts or one line naming the problem, never a traceback ----------------------


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(st.characters(), max_size=80).map(
    lambda text: text.encode("utf-8", "surrogatepass")),
       st.sampled_from(["txt", "csv", "tsv", "jsonl", "json"]), st.sampled_from(readers.ERRORS))
def test_any_bytes_are_texts_or_a_one_line_error(data, kind, errors):
    reader = getattr(readers, f"read_{kind}")
    args = (errors,) if kind == "txt" else ("text", errors)
    try:
        texts = read(reader, data, *args)
    except PipelineError as error:
        assert "\n" not in str(error) and str(error).startswith("in")
    else:
        assert all(isinstance(text, str) for text in texts)
        for text in texts:
            text.encode("utf-8")  # valid text: the tokenizer takes it


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_any_bytes_as_parquet_are_a_one_line_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "in.parquet"
    path.write_bytes(b"PAR1" + data + b"PAR1")
    with pytest.raises(PipelineError, match="in.parquet"):
        list(readers.read_parquet(path, "text", "strict"))


# --- The defects these found, each a test that failed before its fix -------------------------


def test_an_unbalanced_csv_quote_is_an_error_naming_its_line_not_merged_rows():
    data = b'text\ni am glad\n"i am sad, and\ni am scared\ni am cheerful\n'
    assert "line 3" in error_of(readers.read_csv, data, "text", "strict")


def test_a_csv_row_with_fields_missing_or_extra_is_an_error():
    message = error_of(readers.read_csv, b"id,text\n1,glad\n2\n3,sad\n", "text", "strict")
    assert "line 3" in message and "1 field(s), the header has 2" in message
    message = error_of(readers.read_csv, b"text\nglad, so glad\n", "text", "strict")
    assert "line 2" in message and "2 field(s)" in message


def test_blank_csv_lines_are_empty_texts_counted_as_rows():
    assert read(readers.read_csv, b"text\nglad\n\nsad\n", "text", "strict") == [
        "glad", "", "sad"]


def test_csv_with_carriage_return_line_endings_and_long_fields():
    assert read(readers.read_csv, b"text\rglad\rsad\r", "text", "strict") == ["glad", "sad"]
    long = "glad " * 40_000  # 200,000 characters: over the csv module's default limit
    assert read(readers.read_csv, f"text\n{long}\n".encode(), "text", "strict") == [long]


@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_deep_json_and_huge_integers_are_one_line_errors(kind):
    reader = getattr(readers, f"read_{kind}")
    assert "nested too deeply" in error_of(reader, b"[" * 200_000, "text", "strict")
    assert "digits" in error_of(reader, b"[" + b"7" * 5000 + b"]", "text", "strict")


@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_a_lone_surrogate_is_an_error_or_replaced(kind):
    data = b'["ok", "bad \\ud800 text"]' if kind == "json" else b'"ok"\n"bad \\ud800 text"\n'
    message = error_of(getattr(readers, f"read_{kind}"), data, "text", "strict")
    assert ("item 2" if kind == "json" else "line 2") in message and "U+D800" in message
    assert read(getattr(readers, f"read_{kind}"), data, "text", "replace") == [
        "ok", "bad \ufffd text"]


def test_a_non_utf8_argument_is_an_error_naming_it():
    argument = b"caf\xe9".decode("utf-8", "surrogateescape")  # as Python passes such argv
    with pytest.raises(PipelineError, match="argument 2.*0xE9"):
        list(readers.read_arguments(["fine", argument], "strict"))
    assert list(readers.read_arguments([argument], "replace")) == ["caf\ufffd"]


def test_parquet_nulls_and_non_strings_are_errors_not_empty_texts(tmp_path):
    pq.write_table(pa.table({"text": ["glad", None, "sad"]}), tmp_path / "nulls.parquet")
    with pytest.raises(PipelineError, match=r"nulls.parquet row 2: .*null"):
        list(readers.read_parquet(tmp_path / "nulls.parquet", "text", "strict"))
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(PipelineError, match="holds int64, not strings"):
        list(readers.read_parquet(tmp_path / "ints.parquet", "text", "strict"))


# --- Through the real command, on a tiny ONNX model -----------------------------------------


def predict(model: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_in_process("emotion.prediction.cli", cwd, ["--model", str(model), *args])


@settings(max_examples=60)
@given(texts=TEXTS, kind=st.sampled_from(["csv", "jsonl", "json", "parquet"]))
def test_emotion_predict_labels_exactly_the_texts_written(runtime_folders, tmp_path_factory,
                                                         texts, kind):
    folder = tmp_path_factory.mktemp("predict")
    path = folder / f"in.{kind}"
    if kind == "csv":
        with path.open("w", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerows([["text"], *([text] for text in texts)])
    elif kind == "parquet":
        pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path)
    else:
        path.write_text(json.dumps(texts) if kind == "json" else "".join(
            json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    result = predict(runtime_folders["onnx"], folder, "--input", str(path), "--keep-empty",
                     "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    # JSON Lines: records end with \n only (str.splitlines would also split at U+2028, which
    # JSON leaves unescaped inside a string)
    records = [json.loads(line) for line in result.stdout.split("\n")[:-1]]
    assert [record["text"] for record in records] == texts
    assert [record["label"] is None for record in records] == [
        not text.strip() for text in texts]
    written = predict(runtime_folders["onnx"], folder, "--input", str(path), "--keep-empty",
                      "--format", "csv", "--output", str(folder / "out.csv"))
    assert written.returncode == 0, written.stderr
    with (folder / "out.csv").open(newline="", encoding="utf-8") as stream:
        assert [row["text"] for row in csv.DictReader(stream)] == texts


@settings(max_examples=30)
@given(data=st.binary(max_size=120), kind=st.sampled_from(["txt", "csv", "jsonl", "json"]))
def test_emotion_predict_on_any_bytes_exits_cleanly(runtime_folders, tmp_path_factory, data,
                                                    kind):
    folder = tmp_path_factory.mktemp("bytes")
    (folder / f"in.{kind}").write_bytes(data)
    result = predict(runtime_folders["onnx"], folder, "--input", f"in.{kind}")
    assert result.returncode in (0, 1), result.stderr
    if result.returncode:
        (message,) = result.stderr.splitlines()
        assert message.startswith(f"error: in.{kind}"), message

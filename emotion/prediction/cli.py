"""`emotion-predict`: label texts with a trained model folder.

    emotion-predict "i feel wonderful today" "this is so unfair"
    emotion-predict < tweets.txt > labels.jsonl
    emotion-predict --input tweets.csv --text-column tweet --format csv --output labels.csv
    emotion-predict --min-prob 0.9 < tweets.txt   # null label below 90% (calibrated)

Texts come from the arguments, from stdin (no arguments, or `-`), or from --input (.txt one
text a line, .csv, .jsonl one object a line, .json an array of texts or objects, .parquet);
a UTF-8 byte-order mark (as spreadsheets save) is skipped. They are read and labelled in
batches, so memory stays bounded whatever the input's size (a .json array is read whole).
Output, in input order: a table (the default on a terminal), JSON lines (the default
otherwise) or CSV.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, TextIO

from emotion.errors import PipelineError, first_line
from emotion.files import user_file_output
from emotion.paths import MODEL_DIR, ONNX_DIR
from emotion.prediction.classifier import BACKENDS, DEFAULT_BATCH_SIZE, TextClassifier
from emotion.prediction.onnx_backend import VARIANT_FILES
from emotion.process import start_tensorflow

INPUT_FORMATS = {".txt": "txt", ".csv": "csv", ".jsonl": "jsonl", ".json": "json",
                 ".parquet": "parquet"}
OUTPUT_FORMATS = ("table", "jsonl", "csv")
# How many texts are read, labelled and written at a time (memory stays bounded).
CHUNK = 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="emotion-predict", description="Label English texts with one of the model's "
        "emotions (sadness, joy, love, anger, fear, surprise for the default model).",
        epilog="Empty or whitespace-only texts are skipped (their count goes to stderr) unless "
        "--keep-empty is given, which outputs them with a null label. Texts longer than the "
        "model's max_length tokens are cut exactly as in training and flagged "
        '"truncated": true in jsonl output.')
    parser.add_argument("texts", nargs="*", metavar="TEXT",
                        help="texts to label; none or '-': read one text a line from stdin")
    parser.add_argument("-i", "--input", type=Path, metavar="FILE",
                        help="read texts from FILE: .txt (a text a line), .csv, .jsonl (an "
                        "object a line), .json (an array of texts or of objects) or .parquet")
    parser.add_argument("--text-column", default="text",
                        help="the column (csv, parquet) or key (jsonl) of the texts; "
                        "default: text")
    parser.add_argument("-f", "--format", choices=OUTPUT_FORMATS,
                        help="output format; default: table on a terminal, jsonl otherwise")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write to FILE (replaced only once all is written) instead of "
                        "stdout")
    parser.add_argument("-m", "--model", type=Path, metavar="DIR",
                        help=f"the model folder: an ONNX runtime folder (default: "
                        f"{ONNX_DIR}), or with --backend tensorflow a trained model folder "
                        f"(default: {MODEL_DIR})")
    parser.add_argument("--backend", choices=BACKENDS, default="onnx",
                        help="onnx (the default: onnxruntime, no TensorFlow) or tensorflow "
                        "(the trained model folder, as the pipeline evaluates it)")
    parser.add_argument("--variant", choices=tuple(VARIANT_FILES),
                        help="with the onnx backend: the float32 or int8 graph; default: the "
                        "folder's (int8 where the onnx stage measured it as accurate)")
    parser.add_argument("-b", "--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"texts per forward pass; default: {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--min-prob", type=float, metavar="P",
                        help="a null label (scores still given) for texts whose top "
                        "probability is below P, counted on stderr; the model card gives the "
                        "test split's coverage and accuracy at a few thresholds")
    parser.add_argument("--keep-empty", action="store_true",
                        help="output empty texts with a null label instead of skipping them")
    parser.add_argument("--errors", choices=("strict", "replace"), default="strict",
                        help="invalid UTF-8 in the input: stop with an error naming the line "
                        "(strict, the default) or replace the bad bytes with U+FFFD")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on stderr (it only shows on a terminal anyway)")
    args = parser.parse_args(argv)
    if args.input is not None and args.texts:
        parser.error("give texts as arguments or --input FILE, not both")
    if args.variant is not None and args.backend != "onnx":
        parser.error("--variant goes with --backend onnx")
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be > 0, got {args.batch_size}")
    if args.min_prob is not None and not 0 <= args.min_prob <= 1:
        parser.error(f"--min-prob must be in [0, 1], got {args.min_prob}")
    return args


# --- Reading ---------------------------------------------------------------------------------


def decode(line: bytes, where: str, errors: str) -> str:
    """A line of bytes as text; invalid UTF-8 is an error naming `where` unless replaced."""
    try:
        return line.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        raise PipelineError(f"{where}: invalid UTF-8 at byte {error.start + 1} (use --errors "
                            "replace to replace bad bytes)") from None


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The stream's lines, numbered from 1, without a UTF-8 byte-order mark at its start."""
    for number, line in enumerate(stream, start=1):
        yield number, line.removeprefix(codecs.BOM_UTF8) if number == 1 else line


def read_lines(stream: IO[bytes], name: str, errors: str) -> Iterator[str]:
    """One text a line (the line break removed)."""
    for number, line in numbered_lines(stream):
        yield decode(line, f"{name} line {number}", errors).rstrip("\r\n")


def read_jsonl(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """The `column` key of each JSON object, one a line (blank lines skipped)."""
    for number, line in numbered_lines(stream):
        where = f"{name} line {number}"
        text = decode(line, where, errors)
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise PipelineError(f"{where}: not valid JSON ({error.msg})") from None
        yield record_text(record, column, where)


def read_json_array(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """Each item of a JSON array: a text, or an object's `column` key."""
    text = decode(stream.read().removeprefix(codecs.BOM_UTF8), name, errors)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise PipelineError(f"{name}: not valid JSON ({error.msg} at line {error.lineno}; for "
                            "one JSON object a line, name the file .jsonl)") from None
    if not isinstance(items, list):
        raise PipelineError(f"{name}: not a JSON array of texts or objects (for one JSON "
                            "object a line, name the file .jsonl)")
    for number, item in enumerate(items, start=1):
        where = f"{name} item {number}"
        yield text_value(item, where) if not isinstance(item, dict) else record_text(
            item, column, where)


def record_text(record: object, column: str, where: str) -> str:
    """The text under key `column` of a JSON object."""
    if not isinstance(record, dict) or column not in record:
        raise PipelineError(f"{where}: no key {column!r} (use --text-column)")
    return text_value(record[column], where)


def read_csv(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """The `column` of each CSV row."""
    lines = (decode(line, f"{name} line {number}", errors)
             for number, line in numbered_lines(stream))
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return
    if column not in reader.fieldnames:
        raise PipelineError(f"{name}: no column {column!r} (columns: "
                            f"{', '.join(reader.fieldnames)}; use --text-column)")
    for row in reader:
        yield text_value(row[column], f"{name} line {reader.line_num}")


def read_parquet(path: Path, column: str) -> Iterator[str]:
    """The `column` of a parquet file, a batch of rows at a time."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise PipelineError(f"{path}: not a readable parquet file ({first_line(error)})"
                            ) from None
    if column not in table.schema_arrow.names:
        raise PipelineError(f"{path}: no column {column!r} (columns: "
                            f"{', '.join(table.schema_arrow.names)}; use --text-column)")
    row = 0
    for batch in table.iter_batches(batch_size=CHUNK, columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            yield text_value(value, f"{path} row {row}")


def text_value(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PipelineError(f"{where}: the text is not a string: {value!r}")
    return value


def read_texts(args: argparse.Namespace) -> Iterator[str]:
    """Every input text, in order, from the arguments, stdin or --input."""
    if args.input is None:
        if args.texts and args.texts != ["-"]:
            yield from args.texts
        else:
            yield from read_lines(sys.stdin.buffer, "stdin", args.errors)
        return
    path = args.input
    kind = INPUT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PipelineError(f"{path}: unknown input format {path.suffix!r} (use one of "
                            f"{', '.join(INPUT_FORMATS)})")
    if kind == "parquet":
        yield from read_parquet(path, args.text_column)
        return
    try:
        stream = path.open("rb")
    except OSError as error:
        raise PipelineError(f"{path}: cannot read ({error.strerror})") from None
    with stream:
        if kind == "txt":
            yield from read_lines(stream, str(path), args.errors)
        elif kind == "jsonl":
            yield from read_jsonl(stream, str(path), args.text_column, args.errors)
        elif kind == "json":
            yield from read_json_array(stream, str(path), args.text_column, args.errors)
        else:
            yield from read_csv(stream, str(path), args.text_column, args.errors)


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def start_backend(backend: str) -> None:
    """This process's settings for the backend, before it loads: TensorFlow's (the
    pipeline's own, and its start-up notices dropped) and transformers' load reports left
    out of stderr, which is for our progress, counts and errors."""
    if backend == "tensorflow":
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        start_tensorflow()


# --- Writing ---------------------------------------------------------------------------------


class Writer:
    """Writes predictions in one output format as they come."""

    def __init__(self, stream: TextIO, kind: str, labels: list[str]):
        self.stream, self.kind, self.labels = stream, kind, labels
        if kind == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            self.csv.writerow(["text", "label", "truncated", *labels])
        elif kind == "table":
            stream.write(f"{'label':<9} {'prob':>5}  text\n")

    def write(self, text: str, label: str | None, scores: list[float] | None,
              truncated: bool) -> None:
        if self.kind == "jsonl":
            record = {"text": text, "label": label,
                      "scores": None if scores is None else {
                          name: round(score, 7) for name, score in zip(self.labels, scores)}}
            if truncated:
                record["truncated"] = True
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.kind == "csv":
            self.csv.writerow([text, label or "", str(truncated).lower(),
                               *(f"{score:.6f}" for score in scores or [""] * len(self.labels))])
        else:
            shown = " ".join(text.split())
            shown = shown if len(shown) <= 70 else shown[:69] + "…"
            probability = f"{max(scores):.3f}" if scores else "-"
            self.stream.write(f"{label or '-':<9} {probability:>5}  {shown}\n")


def label_all(args: argparse.Namespace, texts: Iterator[str],
              stream: TextIO) -> tuple[int, int, int]:
    """Label every text and write it; return (labelled, skipped empty, below --min-prob)."""
    from tqdm import tqdm

    start_backend(args.backend)
    # tensorflow: a few texts from the command line run eagerly, since tracing the graph
    # would cost more start-up time than it saves.
    few = args.input is None and args.texts not in ([], ["-"]) and len(args.texts) <= 64
    classifier = TextClassifier(args.model, args.backend, args.batch_size,
                                variant=args.variant, graph=not few)
    kind = args.format or ("table" if stream.isatty() else "jsonl")
    writer = Writer(stream, kind, classifier.labels)
    labelled = skipped = uncertain = 0
    progress = tqdm(unit=" texts", file=sys.stderr, disable=True if args.no_progress else None,
                    mininterval=1.0)
    for chunk in chunks(texts, CHUNK):
        keep = [i for i, text in enumerate(chunk) if text.strip()]
        predictions = classifier.predict([chunk[i] for i in keep])
        top = predictions.top(args.min_prob)
        uncertain += top.count(None)
        rows = dict(zip(keep, zip(top, predictions.probabilities.tolist(),
                                  predictions.truncated)))
        for i, text in enumerate(chunk):
            if i in rows:
                writer.write(text, *rows[i])
            elif args.keep_empty:
                writer.write(text, None, None, False)
            else:
                skipped += 1
        labelled += len(keep)
        progress.update(len(chunk))
    progress.close()
    return labelled, skipped, uncertain


def main(argv: list[str] | None = None) -> None:
    """The console entry point."""
    args = parse_args(argv)
    try:
        if args.output is None:
            labelled, skipped, uncertain = label_all(args, read_texts(args), sys.stdout)
            sys.stdout.flush()
        else:
            with user_file_output(args.output) as out, out.open("w", encoding="utf-8") as stream:
                labelled, skipped, uncertain = label_all(args, read_texts(args), stream)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except BrokenPipeError:  # e.g. `emotion-predict ... | head`: the reader has had enough
        sys.stderr.close()
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    if skipped:
        print(f"skipped {skipped} empty text(s) (--keep-empty outputs them with a null label)",
              file=sys.stderr)
    if args.min_prob is not None:
        print(f"{uncertain} of {labelled} text(s) below --min-prob {args.min_prob}: null label",
              file=sys.stderr)
    if args.output is not None:
        print(f"wrote {labelled} labelled text(s) to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()

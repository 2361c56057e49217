"""`emotion-predict`: label texts with a trained model folder.

    emotion-predict "i feel wonderful today" "this is so unfair"
    emotion-predict < tweets.txt > labels.jsonl
    emotion-predict --input tweets.csv --text-column tweet --format csv --output labels.csv
    emotion-predict --min-prob 0.9 < tweets.txt   # null label below 90% (calibrated)

Texts come from the arguments, from stdin (no arguments, or `-`), or from --input (.txt one
text a line, .csv, .tsv, .jsonl one text or object a line, .json an array of texts or
objects, .parquet; readers.py); one output row per input record, or a one-line error naming
the file and line. They are read and labelled in batches, so memory stays bounded whatever
the input's size (a .json array is read whole).
Output, in input order: a table (the default on a terminal), JSON lines (the default
otherwise) or CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

from emotion.errors import PipelineError
from emotion.files import user_file_output
from emotion.paths import MODEL_DIR, ONNX_DIR
from emotion.prediction import readers
from emotion.prediction.classifier import BACKENDS, DEFAULT_BATCH_SIZE, TextClassifier
from emotion.prediction.runtime_settings import RUNTIMES
from emotion.process import start_tensorflow

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
                        help="read texts from FILE: .txt (a text a line), .csv, .tsv, .jsonl "
                        "(a text or an object a line), .json (an array of texts or of "
                        "objects) or .parquet")
    parser.add_argument("--text-column", default="text",
                        help="the column (csv, tsv, parquet) or key (jsonl, json) of the texts; "
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
    parser.add_argument("--runtime", choices=tuple(RUNTIMES),
                        help="with the onnx backend: the engine and precision; default: "
                        "openvino-bf16 where OpenVINO is installed, the CPU has bfloat16 "
                        "units and the onnx stage measured it as accurate, else the folder's "
                        "default (onnxruntime-int8 where measured as accurate as float32)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr which runtime runs and why")
    parser.add_argument("-b", "--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"texts per forward pass; default: {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--min-prob", type=float, metavar="P",
                        help="a null label (scores still given) for texts whose top "
                        "probability is below P, counted on stderr; the model card gives the "
                        "test split's coverage and accuracy at a few thresholds")
    parser.add_argument("--keep-empty", action="store_true",
                        help="output empty texts with a null label instead of skipping them")
    parser.add_argument("--errors", choices=readers.ERRORS, default="strict",
                        help="invalid UTF-8 or lone surrogates in the input: stop with an error "
                        "naming the line (strict, the default) or replace them with U+FFFD")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on stderr (it only shows on a terminal anyway)")
    args = parser.parse_args(argv)
    if args.input is not None and args.texts:
        parser.error("give texts as arguments or --input FILE, not both")
    if args.runtime is not None and args.backend != "onnx":
        parser.error("--runtime goes with --backend onnx")
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be > 0, got {args.batch_size}")
    if args.min_prob is not None and not 0 <= args.min_prob <= 1:
        parser.error(f"--min-prob must be in [0, 1], got {args.min_prob}")
    return args


def read_texts(args: argparse.Namespace) -> Iterator[str]:
    """Every input text, in order, from the arguments, stdin or --input (readers.py)."""
    if args.input is not None:
        return readers.read_file(args.input, args.text_column, args.errors)
    if args.texts and args.texts != ["-"]:
        return readers.read_arguments(args.texts, args.errors)
    return readers.read_txt(sys.stdin.buffer, "stdin", args.errors)


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
            # RFC 4180's line ending: the csv module quotes a field holding a lone \r only
            # when \r is part of the line ending it writes.
            self.csv = csv.writer(stream, lineterminator="\r\n")
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
                               *([f"{score:.6f}" for score in scores] if scores is not None
                                 else [""] * len(self.labels))])
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
                                runtime=args.runtime, graph=not few)
    if args.verbose:
        print(f"runtime: {classifier.runtime} ({classifier.why}); model: "
              f"{classifier.backend.folder}", file=sys.stderr)
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
            with user_file_output(args.output, reads=args.input) as out, \
                    out.open("w", encoding="utf-8") as stream:
                labelled, skipped, uncertain = label_all(args, read_texts(args), stream)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except BrokenPipeError:  # e.g. `emotion-predict ... | head`: the reader has had enough
        sys.stderr.close()
        sys.exit(0)
    except OSError as error:  # e.g. no permission, a full disk: nothing was replaced
        print(f"error: {error.filename or args.output or 'output'}: {error.strerror}",
              file=sys.stderr)
        sys.exit(1)
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

"""Reading the texts to label: one function per input format, one contract.

Every reader yields the input's texts in order, exactly one per record: a line (.txt, stdin),
a row (.csv, .tsv, .parquet), a line's JSON value (.jsonl), an array item (.json). Nothing is
dropped or merged silently: a record that holds no text (a null, a number, a CSV row with
more or fewer fields than its header) and anything malformed (an unbalanced CSV quote, JSON
nested too deeply, bytes that are not UTF-8, a lone surrogate) is a PipelineError naming the
file and the line, row or item. A UTF-8 byte-order mark at the start of a file is skipped.
`errors="replace"` replaces what is not valid UTF-8 (bytes, lone surrogates) with U+FFFD
instead.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from emotion.errors import PipelineError, first_line

FORMATS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json",
           ".parquet": "parquet"}
ERRORS = ("strict", "replace")
# The longest CSV field read (Python's csv module stops at 131,072 characters by default);
# a longer one, or an unbalanced quote that would run to it, is an error naming its line.
MAX_FIELD = 64 * 1024 * 1024
# What is not valid Unicode text once decoded: bytes that were not UTF-8 (kept by the
# surrogateescape handler as U+DC80-U+DCFF) and lone surrogates (from JSON's "\ud800").
_NOT_TEXT = re.compile("[\ud800-\udfff]")
_PARQUET_BATCH = 1024


def checked(text: str, where: str, errors: str) -> str:
    """`text` if it is valid Unicode (encodable as UTF-8); else an error naming `where`, or
    with errors="replace" each bad character replaced with U+FFFD."""
    bad = _NOT_TEXT.search(text)
    if bad is None:
        return text
    if errors == "replace":
        return _NOT_TEXT.sub("\ufffd", text)
    code = ord(bad.group())
    what = (f"byte 0x{code - 0xDC00:02X} is not UTF-8" if 0xDC80 <= code <= 0xDCFF
            else f"a lone surrogate U+{code:04X} is not text")
    raise PipelineError(f"{where}: invalid text at character {bad.start() + 1}: {what} (use "
                        "--errors replace to replace it)")


def text_value(value: object, where: str, errors: str) -> str:
    """A JSON or parquet value that must be a text."""
    if not isinstance(value, str):
        shown = "null (a missing text)" if value is None else _shown(value)
        raise PipelineError(f"{where}: the text is not a string: {shown}")
    return checked(value, where, errors)


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def decoded(stream: IO[bytes], newline: str | None) -> io.TextIOWrapper:
    """`stream` as UTF-8 text without a leading byte-order mark; bytes that are not UTF-8
    are kept as surrogates for checked() to name or replace per record."""
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape",
                            newline=newline)


def read_arguments(texts: Sequence[str], errors: str) -> Iterator[str]:
    """Texts given on the command line (an argument that was not UTF-8 is named)."""
    for number, text in enumerate(texts, start=1):
        yield checked(text, f"argument {number}", errors)


def read_txt(stream: IO[bytes], name: str, errors: str) -> Iterator[str]:
    """One text a line; lines end with \\n, \\r\\n or \\r (the ending is not part of the
    text), and a last line without one counts."""
    for number, line in enumerate(decoded(stream, newline=None), start=1):
        yield checked(line.removesuffix("\n"), f"{name} line {number}", errors)


def read_csv(stream: IO[bytes], name: str, column: str, errors: str,
             delimiter: str = ",") -> Iterator[str]:
    """`column` of each row after the header row (RFC 4180: quoted fields may hold the
    delimiter, quotes and line breaks). A blank line is a row with an empty text."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD))
    reader = csv.reader(decoded(stream, newline=""), delimiter=delimiter, strict=True)
    rows = _csv_rows(reader, name)
    header = next(rows, None)
    if header is None:
        return
    _, fields = header
    if column not in fields:
        listed = ", ".join(checked(field, name, "replace") for field in fields)
        raise PipelineError(f"{name}: no column {column!r} (columns: {listed}; use "
                            "--text-column)")
    if fields.count(column) > 1:
        raise PipelineError(f"{name}: column {column!r} appears {fields.count(column)} times")
    index = fields.index(column)
    for line, row in rows:
        where = f"{name} line {line}"
        if not row:
            yield ""
        elif len(row) != len(fields):
            raise PipelineError(f"{where}: {len(row)} field(s), the header has {len(fields)}"
                                " (an unquoted delimiter, or a quote that does not close?)")
        else:
            yield checked(row[index], where, errors)


def _csv_rows(reader, name: str) -> Iterator[tuple[int, list[str]]]:
    """The rows with the line each starts on; a csv.Error names that line."""
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            message = first_line(error)
            if message == "unexpected end of data":
                message = "a quoted field starts here and its quote never closes"
            elif "field larger than field limit" in message:
                message = f"a field longer than {MAX_FIELD:,} characters (a quote that " \
                          "does not close?)"
            raise PipelineError(f"{name} line {start}: not valid CSV ({message})") from None
        yield start, row
        start = reader.line_num + 1


def read_tsv(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """read_csv with tabs between the fields."""
    return read_csv(stream, name, column, errors, delimiter="\t")


def _json(text: str, where: str, hint: str = "") -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PipelineError(f"{where}: not valid JSON ({error.msg} at line {error.lineno} "
                            f"column {error.colno}){hint}") from None
    except RecursionError:
        raise PipelineError(f"{where}: JSON nested too deeply to be a text or a record"
                            ) from None
    except ValueError as error:  # e.g. an integer of over 4,300 digits
        raise PipelineError(f"{where}: not readable JSON ({first_line(error)})") from None


def _record_text(value: object, column: str, where: str, errors: str) -> str:
    """A text, or the text under `column` of an object."""
    if isinstance(value, dict):
        if column not in value:
            raise PipelineError(f"{where}: no key {column!r} (use --text-column)")
        value = value[column]
    return text_value(value, where, errors)


def read_jsonl(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """JSON Lines: a text, or an object with the text under `column`, a line (blank lines
    are not records)."""
    for number, line in enumerate(stream, start=1):
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        if not line.strip():
            continue
        where = f"{name} line {number}"
        text = checked(line.decode("utf-8", errors="surrogateescape"), where, errors)
        yield _record_text(_json(text, where), column, where, errors)


def read_json(stream: IO[bytes], name: str, column: str, errors: str) -> Iterator[str]:
    """A JSON array of texts or of objects with the text under `column` (read whole)."""
    text = decoded(stream, newline="").read()
    items = _json(text, name, "; for one JSON value a line, name the file .jsonl")
    if not isinstance(items, list):
        raise PipelineError(f"{name}: not a JSON array of texts or objects (for one JSON "
                            "value a line, name the file .jsonl)")
    for number, item in enumerate(items, start=1):
        yield _record_text(item, column, f"{name} item {number}", errors)


def read_parquet(path: Path, column: str, errors: str) -> Iterator[str]:
    """`column` of a parquet file, a batch of rows at a time; it must hold strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        names = table.schema_arrow.names
        if column not in names:
            raise PipelineError(f"{path}: no column {column!r} (columns: {', '.join(names)}; "
                                "use --text-column)")
        kind = table.schema_arrow.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise PipelineError(f"{path}: column {column!r} holds {kind}, not strings")
        row = 0
        for batch in table.iter_batches(batch_size=_PARQUET_BATCH, columns=[column]):
            for value in batch.column(0).to_pylist():
                row += 1
                yield text_value(value, f"{path} row {row}", errors)
    except PipelineError:
        raise
    except Exception as error:  # pyarrow raises several types for damaged files
        raise PipelineError(f"{path}: not a readable parquet file ({first_line(error)})"
                            ) from None


def read_file(path: Path, column: str, errors: str) -> Iterator[str]:
    """The texts of a file, in the format its suffix names (FORMATS)."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PipelineError(f"{path}: unknown input format {path.suffix!r} (use one of "
                            f"{', '.join(FORMATS)})")
    if kind == "parquet":
        yield from read_parquet(path, column, errors)
        return
    try:
        stream = path.open("rb")
    except OSError as error:
        raise PipelineError(f"{path}: cannot read ({error.strerror})") from None
    with stream:
        if kind == "txt":
            yield from read_txt(stream, str(path), errors)
        else:
            reader = {"csv": read_csv, "tsv": read_tsv, "jsonl": read_jsonl,
                      "json": read_json}[kind]
            yield from reader(stream, str(path), column, errors)

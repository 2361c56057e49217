"""runtime.json, the settings of an ONNX runtime folder, as one typed record with a format
version: written by the onnx stage (emotion.packaging.onnx_folder), read by the ONNX backend
and emotion-serve. Format 1 added the version itself; a folder without one is format 0, read
alike. A missing, damaged or wrongly typed file is a PipelineError naming the file and the
key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from emotion.errors import PipelineError, first_line

RUNTIME_FILE = "runtime.json"
FORMAT = 1
VARIANT_FILES = {"float32": "model.onnx", "int8": "model.int8.onnx"}
REBUILD = "run `dvc repro onnx` (or `dvc pull`)"


@dataclass(frozen=True)
class RuntimeSettings:
    """What the backend needs besides the graphs and the tokenizer."""

    labels: list[str]
    max_length: int
    pad_id: int
    truncation_side: str
    default: str  # the variant run unless told otherwise
    int8_block_size: int | None = None  # None: a dynamically quantized int8 graph (format 0)
    format: int = FORMAT

    def write(self, folder: Path) -> None:
        record = {key: value for key, value in dataclasses.asdict(self).items()
                  if value is not None}
        (folder / RUNTIME_FILE).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> RuntimeSettings:
        path = folder / RUNTIME_FILE
        if not path.is_file():
            raise PipelineError(f"{folder}: no ONNX runtime there (no {RUNTIME_FILE}): "
                                f"{REBUILD}, or pass --backend tensorflow to use the trained "
                                "model folder")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise PipelineError(f"{path}: not valid JSON ({first_line(error)}): {REBUILD}"
                                ) from None
        if not isinstance(record, dict):
            raise PipelineError(f"{path}: not a JSON object: {REBUILD}")
        version = record.get("format", 0)
        if not isinstance(version, int) or version > FORMAT:
            raise PipelineError(f"{path}: format {version!r}, newer than this emotion-predict "
                                f"reads ({FORMAT}): upgrade it, or {REBUILD}")
        checks = {
            "labels": lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
            "max_length": lambda v: type(v) is int and v > 2,
            "pad_id": lambda v: type(v) is int and v >= 0,
            "truncation_side": lambda v: v in ("left", "right"),
            "default": lambda v: v in VARIANT_FILES,
        }
        for key, valid in checks.items():
            if key not in record:
                raise PipelineError(f"{path}: no {key}: {REBUILD}")
            if not valid(record[key]):
                raise PipelineError(f"{path}: {key} {json.dumps(record[key])[:40]} is not "
                                    f"valid: {REBUILD}")
        block = record.get("int8_block_size")
        if block is not None and not (type(block) is int and block > 0):
            raise PipelineError(f"{path}: int8_block_size {json.dumps(block)[:40]} is not "
                                f"valid: {REBUILD}")
        return cls(labels=list(record["labels"]), max_length=record["max_length"],
                   pad_id=record["pad_id"], truncation_side=record["truncation_side"],
                   default=record["default"], int8_block_size=block, format=FORMAT)

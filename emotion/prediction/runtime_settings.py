"""runtime.json, the settings of an ONNX runtime folder, as one typed record with a format
version, and the runtimes that can run such a folder: written by the onnx stage
(emotion.packaging.onnx_folder), read by the backends and emotion-serve. Format 2 named the
runtimes (engine and precision) and added `preferred`; format 1 the version itself; a folder
without one is format 0. Older formats are read alike (their variants "float32" and "int8"
are ONNX Runtime's). A missing, damaged or wrongly typed file is a PipelineError naming the
file and the key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from emotion.errors import PipelineError, first_line

RUNTIME_FILE = "runtime.json"
FORMAT = 2
REBUILD = "run `dvc repro publish` (or `dvc pull`)"


@dataclass(frozen=True)
class Runtime:
    """An engine running one of the folder's graphs in one precision."""

    engine: str  # onnxruntime or openvino
    graph: str  # the graph's file in the folder
    precision: str  # float32, int8 (8-bit weights) or bf16 (bfloat16 matmuls)
    # How far a text's probabilities may move between running alone and in a batch (kernels
    # are chosen per batch shape); a larger move, or a label moved, and it runs one text at
    # a time.
    batch_tolerance: float


# Every runtime a folder can run with; OpenVINO reads the fused float32 graph (its ONNX
# frontend implements ONNX Runtime's fused com.microsoft operators). The tolerances: ONNX
# Runtime's float32 and block-quantized int8 kernels give a text the same scores in any
# batch; OpenVINO's float32 moves them by ~2e-6 and its bfloat16 (8 significant bits) by
# ~0.01 on the real model (AMD EPYC with AVX512_BF16), whose bf16 probabilities differ from
# float32's by ~0.04 (docs/performance.md).
RUNTIMES = {
    "onnxruntime-float32": Runtime("onnxruntime", "model.onnx", "float32", 1e-6),
    "onnxruntime-int8": Runtime("onnxruntime", "model.int8.onnx", "int8", 1e-6),
    "openvino-float32": Runtime("openvino", "model.onnx", "float32", 1e-5),
    "openvino-bf16": Runtime("openvino", "model.onnx", "bf16", 0.02),
}
# The graphs the onnx stage writes, by precision.
GRAPHS = {"float32": "model.onnx", "int8": "model.int8.onnx"}
# What formats 0 and 1 called the runtimes.
OLD_NAMES = {"float32": "onnxruntime-float32", "int8": "onnxruntime-int8"}


@dataclass(frozen=True)
class RuntimeSettings:
    """What the backends need besides the graphs and the tokenizer."""

    labels: list[str]
    max_length: int
    pad_id: int
    truncation_side: str
    default: str  # the ONNX Runtime runtime run unless one of `preferred` can run here
    # Runtimes the onnx stage measured as accurate as `default` on validation, tried first,
    # in this order, where they can run (their engine installed, the CPU able).
    preferred: list[str] = dataclasses.field(default_factory=list)
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
        if version < 2 and record.get("default") in OLD_NAMES:
            record["default"] = OLD_NAMES[record["default"]]
        checks = {
            "labels": lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
            "max_length": lambda v: type(v) is int and v > 2,
            "pad_id": lambda v: type(v) is int and v >= 0,
            "truncation_side": lambda v: v in ("left", "right"),
            "default": lambda v: v in RUNTIMES,
        }
        for key, valid in checks.items():
            if key not in record:
                raise PipelineError(f"{path}: no {key}: {REBUILD}")
            if not valid(record[key]):
                raise PipelineError(f"{path}: {key} {json.dumps(record[key])[:40]} is not "
                                    f"valid: {REBUILD}")
        optional = {
            "int8_block_size": lambda v: v is None or (type(v) is int and v > 0),
            "preferred": lambda v: isinstance(v, list) and all(x in RUNTIMES for x in v),
        }
        for key, valid in optional.items():
            if key in record and not valid(record[key]):
                raise PipelineError(f"{path}: {key} {json.dumps(record[key])[:40]} is not "
                                    f"valid: {REBUILD}")
        return cls(labels=list(record["labels"]), max_length=record["max_length"],
                   pad_id=record["pad_id"], truncation_side=record["truncation_side"],
                   default=record["default"], preferred=list(record.get("preferred", [])),
                   int8_block_size=record.get("int8_block_size"), format=FORMAT)

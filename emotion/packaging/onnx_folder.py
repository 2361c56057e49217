"""The ONNX runtime folder of a trained model: the classifier as a fused float32 graph and an
int8 copy (emotion.packaging.onnx_graph, emotion.packaging.onnx_optimize), and what
emotion.prediction.onnx_backend needs to label raw text without TensorFlow (tokenizer.json,
labels, max_length; see emotion.prediction.onnx_backend for the folder's layout).

Converting needs TensorFlow; running the result does not.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from emotion.packaging.onnx_graph import convert
from emotion.packaging.onnx_optimize import fuse, quantize_int8
from emotion.prediction.runtime_settings import GRAPHS, RuntimeSettings

if TYPE_CHECKING:
    from emotion.tensorflow_backend import TensorFlowBackend


def write_runtime(trained: TensorFlowBackend, folder: Path, *, int8_block_size: int) -> None:
    """The runtime folder of a trained model (loaded on the tensorflow backend): the fused
    float32 graph, its int8 copy (8-bit weights in blocks of `int8_block_size`), the
    tokenizer, and runtime.json (labels, max_length, padding and truncation; the default
    runtime is set later by set_runtime_choice, once each has been measured)."""
    folder.mkdir(parents=True)
    config = trained.model.config
    with tempfile.TemporaryDirectory() as scratch:
        standard = Path(scratch) / "standard.onnx"
        convert(trained.model, standard)
        fuse(standard, folder / GRAPHS["float32"], config.num_attention_heads,
             config.hidden_size)
    # Quantized after fusing: quantizing first turns the query/key/value MatMuls into
    # MatMulNBits, which the attention fusion does not match (docs/performance.md). So the
    # weights inside Attention stay float32; every other MatMul's are 8-bit.
    quantize_int8(folder / GRAPHS["float32"], folder / GRAPHS["int8"],
                  int8_block_size)
    shutil.copy(trained.folder / "tokenizer.json", folder / "tokenizer.json")
    tokenizer = trained.tokenizer
    RuntimeSettings(labels=trained.labels, max_length=trained.max_length,
                    pad_id=tokenizer.pad_token_id, truncation_side=tokenizer.truncation_side,
                    int8_block_size=int8_block_size, default="onnxruntime-float32").write(folder)


def set_runtime_choice(folder: Path, default: str, preferred: list[str]) -> None:
    """Record which runtime emotion-predict runs unless told otherwise: the first of
    `preferred` that can run where it runs, else `default`."""
    replace(RuntimeSettings.read(folder), default=default, preferred=preferred).write(folder)

"""The ONNX runtime folder of a trained model: the classifier converted to ONNX with tf2onnx
(float32), a dynamically quantized int8 copy (onnxruntime.quantization), and what
emotion.prediction.onnx_backend needs to label raw text without TensorFlow (tokenizer.json, labels,
max_length; see emotion.prediction.onnx_backend for the folder's layout).

Converting needs TensorFlow; running the result does not.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion.errors import PipelineError, first_line
from emotion.prediction.onnx_backend import RUNTIME_FILE, VARIANT_FILES

if TYPE_CHECKING:
    from emotion.tensorflow_backend import TensorFlowBackend

# ONNX opset of the converted graph: 17 has LayerNormalization, which onnxruntime fuses.
OPSET = 17
INT8_WEIGHT_TYPES = ("QUInt8", "QInt8")


def erf_gelu(x: Any) -> Any:
    """The exact GELU, x * Phi(x), written with erf: TF 2.21's own exact GELU lowers to Erfc,
    which tf2onnx 1.17 cannot convert ("Unsupported ops: Erfc"); ONNX has Erf."""
    import tensorflow as tf

    return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


@contextmanager
def convertible_activations(model: Any) -> Iterator[None]:
    """While converting: every layer whose activation is Keras's exact GELU uses erf_gelu,
    the same function in ONNX-convertible ops; put back afterwards."""
    import tf_keras

    swapped = [layer for layer in model.submodules
               if getattr(layer, "intermediate_act_fn", None) is tf_keras.activations.gelu]
    for layer in swapped:
        layer.intermediate_act_fn = erf_gelu
    try:
        yield
    finally:
        for layer in swapped:
            layer.intermediate_act_fn = tf_keras.activations.gelu


def convert(model: Any, path: Path) -> None:
    """Write the classifier's logits function (input_ids, attention_mask: int32
    [batch, length] -> logits: float32 [batch, labels]) as an ONNX file."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]

    @tf.function(input_signature=spec, autograph=False)  # see emotion.training
    def logits(input_ids, attention_mask):
        return model({"input_ids": input_ids, "attention_mask": attention_mask},
                     training=False).logits

    with convertible_activations(model):
        try:
            graph, _ = tf2onnx.convert.from_function(logits, input_signature=spec,
                                                     opset=OPSET)
        except Exception as error:  # tf2onnx raises many types for unsupported graphs
            raise PipelineError(f"cannot convert the model to ONNX: {first_line(error)}"
                                ) from None
    (output,) = graph.graph.output
    for node in graph.graph.node:  # name the output "logits" (tf2onnx names it Identity:0)
        node.output[:] = ["logits" if name == output.name else name for name in node.output]
    output.name = "logits"
    onnx.save(graph, str(path))


def quantize(source: Path, destination: Path, weight_type: str, per_channel: bool) -> None:
    """Dynamic int8 quantization: weights stored as 8-bit integers (one scale per tensor, or
    per output channel), activations quantized per run (onnxruntime's quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(destination), weight_type=getattr(QuantType, weight_type),
                     per_channel=per_channel)


def write_runtime(trained: TensorFlowBackend, folder: Path, *, weight_type: str,
                  per_channel: bool) -> None:
    """The runtime folder of a trained model (loaded on the tensorflow backend): both graphs,
    its tokenizer, and runtime.json (labels, max_length, padding and truncation; the default
    variant is set later by set_default_variant, once both have been measured)."""
    folder.mkdir(parents=True)
    convert(trained.model, folder / VARIANT_FILES["float32"])
    quantize(folder / VARIANT_FILES["float32"], folder / VARIANT_FILES["int8"], weight_type,
             per_channel)
    shutil.copy(trained.folder / "tokenizer.json", folder / "tokenizer.json")
    tokenizer = trained.tokenizer
    settings = {
        "labels": trained.labels,
        "max_length": trained.max_length,
        "pad_id": tokenizer.pad_token_id,
        "truncation_side": tokenizer.truncation_side,
        "int8_weight_type": weight_type,
        "int8_per_channel": per_channel,
        "default": "float32",
    }
    (folder / RUNTIME_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def set_default_variant(folder: Path, variant: str) -> None:
    """Record which graph emotion-predict runs unless told otherwise."""
    path = folder / RUNTIME_FILE
    settings = json.loads(path.read_text())
    settings["default"] = variant
    path.write_text(json.dumps(settings, indent=2) + "\n")

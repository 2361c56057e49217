"""A trained classifier as a standard-op ONNX graph (tf2onnx), written in the forms ONNX
Runtime's transformer optimizer recognises, so emotion.packaging.onnx_optimize can fuse it.

tf2onnx converts what TensorFlow traces, and the optimizer fuses only exact subgraphs. While
converting, the model's layers are traced in the textbook forms the optimizer matches (each
the same function as the layer's own; parity with TensorFlow is measured by the onnx stage):
- exact GELU written with erf (TF 2.21's lowers to Erfc, which tf2onnx cannot convert);
- LayerNormalization as mean, centre, mean square, sqrt, divide, scale, shift (tf_keras
  takes a moments/batch-norm route for BERT's epsilon 1e-12);
- Dense as one MatMul plus bias (tf_keras reshapes a 3-D input around a 2-D MatMul);
- softmax without transformers' `stable_softmax` +1e-9 (a shift, which softmax ignores).
Then three rewrites of the converted graph, each exact, undo what TensorFlow's graph
optimizer or tf2onnx changed after tracing (see fusable_forms).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from emotion.errors import PipelineError, first_line

# ONNX opset of the converted graph: 17 has LayerNormalization.
OPSET = 17
# Grappler turns `x / c` into `x * (1/c)` and names the folded constant thus.
FOLDED_RECIPROCAL = "truediv_recip:0"


def erf_gelu(x: Any) -> Any:
    """The exact GELU, x * Phi(x), written with erf."""
    import tensorflow as tf

    return x * 0.5 * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


def _layer_norm(layer: Any) -> Any:
    import tensorflow as tf

    own = layer.call

    def call(x: Any) -> Any:
        if [axis % x.shape.rank for axis in layer.axis] != [x.shape.rank - 1]:
            return own(x)  # the textbook form below normalises the last axis only
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        centred = x - mean
        variance = tf.reduce_mean(tf.pow(centred, 2.0), axis=-1, keepdims=True)
        return centred / tf.sqrt(variance + layer.epsilon) * layer.gamma + layer.beta
    return call


def _dense(layer: Any) -> Any:
    import tensorflow as tf

    def call(x: Any) -> Any:
        y = tf.matmul(x, layer.kernel)
        y = y + layer.bias if layer.use_bias else y
        return layer.activation(y)
    return call


@contextmanager
def _swapped(obj: Any, name: str, value: Any) -> Iterator[None]:
    """obj.name is value inside the block; the attribute is put back afterwards."""
    had, old = name in vars(obj), vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


@contextmanager
def convertible_layers(model: Any) -> Iterator[None]:
    """While converting: the model's GELU, layer norms, dense layers and softmax in the forms
    listed in the module docstring; all put back afterwards."""
    import tensorflow as tf
    import tf_keras

    with ExitStack() as stack:
        for layer in model.submodules:
            if getattr(layer, "intermediate_act_fn", None) is tf_keras.activations.gelu:
                stack.enter_context(_swapped(layer, "intermediate_act_fn", erf_gelu))
            if (isinstance(layer, tf_keras.layers.LayerNormalization) and layer.center
                    and layer.scale):
                stack.enter_context(_swapped(layer, "call", _layer_norm(layer)))
            if type(layer) is tf_keras.layers.Dense:
                stack.enter_context(_swapped(layer, "call", _dense(layer)))
        module = sys.modules[type(model).__module__]
        if hasattr(module, "stable_softmax"):
            stack.enter_context(_swapped(
                module, "stable_softmax",
                lambda logits, axis=-1, name=None: tf.nn.softmax(logits, axis=axis, name=name)))
        yield


def fusable_forms(graph: Any) -> None:
    """Exact rewrites of a tf2onnx graph, in place, into the forms ONNX Runtime's fusions match:
    - GlobalAveragePool over the last axis of a 3-D tensor (tf2onnx's rewrite of a mean) back
      to ReduceMean(axes=[-1]);
    - `x * (1/c)` where TensorFlow folded a division by a constant back to `x / c`, as the
      model's source wrote it (GELU's x/sqrt(2), attention's scores/sqrt(head size));
    - the attention mask's Reshape(mask, [0, 1, 1, -1]) as two Unsqueezes.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(graph)
    ranks = {info.name: len(info.type.tensor_type.shape.dim)
             for info in [*inferred.graph.value_info, *inferred.graph.input]
             if info.type.tensor_type.HasField("shape")}
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    nodes = graph.graph.node
    for node in list(nodes):
        if node.op_type == "GlobalAveragePool" and ranks.get(node.input[0]) == 3:
            node.op_type = "ReduceMean"
            node.attribute.extend([helper.make_attribute("axes", [-1]),
                                   helper.make_attribute("keepdims", 1)])
        elif node.op_type == "Mul" and any(name.endswith(FOLDED_RECIPROCAL)
                                           for name in node.input):
            position = 0 if node.input[0].endswith(FOLDED_RECIPROCAL) else 1
            reciprocal = numpy_helper.to_array(constants[node.input[position]])
            divisor = f"{node.name}/divisor"
            graph.graph.initializer.append(numpy_helper.from_array(
                (1.0 / reciprocal).astype(reciprocal.dtype), divisor))
            node.op_type = "Div"
            node.input[:] = [node.input[1 - position], divisor]
        elif (node.op_type == "Reshape" and node.input[0] == "attention_mask"
              and node.input[1] in constants and numpy_helper.to_array(
                  constants[node.input[1]]).tolist() == [0, 1, 1, -1]):
            axes = [f"{node.name}/axis_{axis}" for axis in (1, 2)]
            graph.graph.initializer.extend(numpy_helper.from_array(np.array([axis], np.int64),
                                                                   name)
                                           for axis, name in zip((1, 2), axes))
            first = helper.make_node("Unsqueeze", [node.input[0], axes[0]],
                                     [f"{node.name}/unsqueezed"], name=f"{node.name}/unsqueeze_1")
            second = helper.make_node("Unsqueeze", [first.output[0], axes[1]], list(node.output),
                                      name=f"{node.name}/unsqueeze_2")
            position = list(nodes).index(node)
            nodes.remove(node)
            nodes.insert(position, second)
            nodes.insert(position, first)


def convert(model: Any, path: Path) -> None:
    """Write the classifier's logits function (input_ids, attention_mask: int32
    [batch, length] -> logits: float32 [batch, labels]) as a standard-op ONNX file."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]

    @tf.function(input_signature=spec, autograph=False)  # see emotion.training
    def logits(input_ids, attention_mask):
        return model({"input_ids": input_ids, "attention_mask": attention_mask},
                     training=False).logits

    with convertible_layers(model):
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
    fusable_forms(graph)
    onnx.save(graph, str(path))

"""The runtime graphs made from the standard-op graph (emotion.packaging.onnx_graph), with ONNX
Runtime's own tools:
- fuse: its transformer optimizer replaces attention, layer norms (with their residual adds)
  and GELU (with its bias) by its fused CPU kernels (Attention, SkipLayerNormalization,
  BiasGelu);
- quantize_int8: every remaining MatMul's weights as 8-bit integers, one scale per block of
  `block_size` input weights (MatMulNBits, bits=8, accuracy_level 4). At run time each row of
  activations (one token of one text) is quantized on its own, per block, so a text's scores
  do not depend on the texts or padding batched with it; dynamic quantization
  (quantize_dynamic) scales the whole batch by one range and cannot batch.
- runtime_operators: what ONNX Runtime actually runs, counted in its optimized graph.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

# Kernels the counts in metrics/onnx.json report; any other op is counted under "other".
COUNTED_OPERATORS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization",
                     "LayerNormalization", "BiasGelu", "Gelu", "FastGelu", "MatMulNBits",
                     "MatMul", "FusedMatMul", "MatMulInteger", "DynamicQuantizeLinear")


def fuse(source: Path, destination: Path, num_heads: int, hidden_size: int) -> None:
    """`source` with ONNX Runtime's fused transformer kernels, written to `destination`."""
    from onnxruntime.transformers.optimizer import optimize_model

    # It warns that tf2onnx is not the producer it expects; the fusions are counted instead.
    logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)
    model = optimize_model(str(source), model_type="bert", num_heads=num_heads,
                           hidden_size=hidden_size, opt_level=0)
    model.save_model_to_file(str(destination))


def quantize_int8(source: Path, destination: Path, block_size: int) -> None:
    """`source` with 8-bit block-quantized MatMul weights (see the module docstring)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(
        logging.WARNING)
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                          accuracy_level=4, bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=8, block_size=block_size,
                                     is_symmetric=True, accuracy_level=4, algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(destination), use_external_data_format=False)


def runtime_operators(path: Path) -> dict[str, int]:
    """How many of each COUNTED_OPERATORS kernel ONNX Runtime runs for the graph at `path`
    on this CPU (its optimized graph), and how many other nodes."""
    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory() as scratch:
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts = Counter(node.op_type for node in
                         onnx.load(options.optimized_model_filepath).graph.node)
    return {**{name: counts.pop(name, 0) for name in COUNTED_OPERATORS},
            "other": sum(counts.values())}

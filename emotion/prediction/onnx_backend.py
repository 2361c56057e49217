"""The light prediction backend: a trained model's ONNX runtime folder (written by the onnx
stage, emotion.packaging.onnx_folder) run with onnxruntime and the `tokenizers` library. It imports
neither TensorFlow nor transformers, so it starts in a fraction of a second and installs
without the training stack (requirements-predict.txt).

The folder (models/onnx by default):
- model.onnx, model.int8.onnx: the classifier as a fused float32 graph and its copy with 8-bit
  block-quantized weights (input_ids, attention_mask: int32 [batch, length] -> logits:
  float32 [batch, labels]); in both, a text's scores do not depend on its batch;
- tokenizer.json: the trained model's own tokenizer (the one training encoded with);
- runtime.json: label names, max_length, the padding id, the truncation side, the int8 block
  size and the default variant (int8 where the onnx stage measured it as accurate as float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError, first_line
from emotion.files import read_json
from emotion.prediction.backend import Predictions, padded_batches
from emotion.prediction.runtime_settings import (
    REBUILD,
    RUNTIME_FILE,
    VARIANT_FILES,
    RuntimeSettings,
)

# Texts of different lengths that an int8 graph's batches are checked with when it loads.
PROBE_TEXTS = ("i feel fine", "ok", "i am so nervous about the exam tomorrow morning",
               "what a lovely surprise to see all of you here today, thank you so much",
               "this is unfair", "i miss you")


class OnnxBackend:
    """Token ids and logits of raw text from an ONNX runtime folder."""

    def __init__(self, folder: str | Path, batch_size: int, variant: str | None = None,
                 threads: int = 0):
        """variant: float32 or int8 (None: the folder's default); threads: onnxruntime's
        intra-op threads (0: one per physical core)."""
        import onnxruntime
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        settings = RuntimeSettings.read(self.folder)
        self.labels, self.max_length = settings.labels, settings.max_length
        self.pad_id = settings.pad_id
        self.variant = variant or settings.default
        if self.variant not in VARIANT_FILES:
            raise PipelineError(f"unknown ONNX variant {self.variant!r} (use one of "
                                f"{', '.join(VARIANT_FILES)})")
        self.batch_size = batch_size
        # Folders written before block quantization hold a dynamically quantized int8 graph,
        # whose scores depend on the batch: that one runs a text at a time.
        self.batches = not (self.variant == "int8" and settings.int8_block_size is None)
        path = self.folder / "tokenizer.json"
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust library reports every problem as Exception
            raise PipelineError(f"{path}: cannot load the tokenizer ({first_line(error)}): "
                                f"{REBUILD}") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length,
                                         direction=settings.truncation_side)
        path = self.folder / VARIANT_FILES[self.variant]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: no warnings on stderr
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for damaged files
            raise PipelineError(f"{path}: cannot load the ONNX model ({first_line(error)}): "
                                f"{REBUILD}") from None
        columns = self.session.get_outputs()[0].shape[-1]
        if isinstance(columns, int) and columns != len(self.labels):
            raise PipelineError(f"{path}: gives {columns} scores but {self.folder}/"
                                f"{RUNTIME_FILE} names {len(self.labels)} labels: {REBUILD}")
        # int8 kernels are chosen per CPU, and on some a text's scores could depend on its
        # batch (the onnx stage checks it only where it runs): checked here, on this CPU.
        if self.variant == "int8" and self.batches and not self.batch_independent():
            self.batches = False

    def batch_independent(self) -> bool:
        """Whether PROBE_TEXTS get the same labels and probabilities (within 1e-6) in one
        batch as one at a time, on this CPU."""
        ids = self.encode(PROBE_TEXTS)[0]
        together, batches = self.logits(ids), self.batches
        self.batches = False
        try:
            alone = self.logits(ids)
        finally:
            self.batches = batches
        together, alone = (Predictions(self.labels, logits, []) for logits in (together, alone))
        return (together.top() == alone.top()
                and float(np.abs(together.probabilities - alone.probabilities).max()) <= 1e-6)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text, cut at max_length exactly as training's tokenizer cuts
        them, and whether each was cut."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return ([encoding.ids for encoding in encodings],
                [bool(encoding.overflowing) for encoding in encodings])

    def logits(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits of every sequence, in input order; batches are length-sorted, so little
        padding is computed."""
        logits = np.empty((len(input_ids), len(self.labels)), np.float32)
        size = self.batch_size if self.batches else 1
        for batch, ids, mask in padded_batches(input_ids, size, self.pad_id):
            (logits[batch],) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return logits

    def check_against(self, model_folder: Path) -> None:
        """A PipelineError naming the file if this runtime folder's labels, max_length or
        vocabulary differ from the trained model folder's (a stale runtime folder)."""
        id2label = read_json(model_folder / "config.json", REBUILD).get("id2label", {})
        labels = [id2label.get(str(i)) for i in range(len(id2label))]
        max_length = read_json(model_folder / "tokenizer_config.json", REBUILD).get(
            "model_max_length")
        vocabulary, trained_vocabulary = (
            read_json(folder / "tokenizer.json", REBUILD).get("model", {}).get("vocab")
            for folder in (self.folder, model_folder))
        for what, file, ours, trained in (
                ("labels", RUNTIME_FILE, self.labels, labels),
                ("max_length", RUNTIME_FILE, self.max_length, max_length),
                ("vocabulary", "tokenizer.json", vocabulary, trained_vocabulary)):
            if ours != trained:
                raise PipelineError(f"{self.folder / file}: its {what} differs from the trained "
                                    f"model's in {model_folder} (stale): {REBUILD}")

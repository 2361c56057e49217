"""What every engine running an ONNX runtime folder shares: the folder's settings and
tokenizer, encoding as training did, the padding-bounded batches, the load-time check that a
text's scores do not depend on its batch on this CPU, and the check against the trained model
folder. An engine (emotion.prediction.onnx_backend, emotion.prediction.openvino_backend) adds
only how it loads a graph and runs one batch.

The folder (models/onnx by default, written by the onnx stage, emotion.packaging.onnx_folder):
- model.onnx, model.int8.onnx: the classifier as a fused float32 graph and its copy with 8-bit
  block-quantized weights (input_ids, attention_mask: int32 [batch, length] -> logits:
  float32 [batch, labels]);
- tokenizer.json: the trained model's own tokenizer (the one training encoded with);
- runtime.json: label names, max_length, the padding id, the truncation side, the int8 block
  size, the default runtime and the runtimes preferred to it where they can run
  (emotion.prediction.runtime_settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError, first_line
from emotion.files import read_json
from emotion.prediction.backend import Predictions, padded_batches
from emotion.prediction.runtime_settings import REBUILD, RUNTIME_FILE, RUNTIMES, RuntimeSettings

# Texts of different lengths that a graph's batches are checked with when it loads.
PROBE_TEXTS = ("i feel fine", "ok", "i am so nervous about the exam tomorrow morning",
               "what a lovely surprise to see all of you here today, thank you so much",
               "this is unfair", "i miss you")


class RuntimeFolderBackend:
    """Token ids and logits of raw text from an ONNX runtime folder, on one runtime (a
    Backend); subclasses load and run the graph."""

    engine = ""

    def __init__(self, folder: str | Path, runtime: str, batch_size: int, threads: int = 0):
        """runtime: a name of RUNTIMES run by this engine; threads: the engine's threads
        (0: its default, one per physical core)."""
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        settings = RuntimeSettings.read(self.folder)
        self.labels, self.max_length = settings.labels, settings.max_length
        self.pad_id = settings.pad_id
        if RUNTIMES.get(runtime, None) is None or RUNTIMES[runtime].engine != self.engine:
            raise PipelineError(f"unknown {self.engine} runtime {runtime!r}")
        self.runtime, self.batch_size = runtime, batch_size
        spec = RUNTIMES[runtime]
        # Folders written before block quantization hold a dynamically quantized int8 graph,
        # whose scores depend on the batch: that one runs a text at a time.
        self.batches = not (spec.precision == "int8" and settings.int8_block_size is None)
        path = self.folder / "tokenizer.json"
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust library reports every problem as Exception
            raise PipelineError(f"{path}: cannot load the tokenizer ({first_line(error)}): "
                                f"{REBUILD}") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length,
                                         direction=settings.truncation_side)
        path = self.folder / spec.graph
        columns = self.load(path, spec.precision, threads)
        if isinstance(columns, int) and columns != len(self.labels):
            raise PipelineError(f"{path}: gives {columns} scores but {self.folder}/"
                                f"{RUNTIME_FILE} names {len(self.labels)} labels: {REBUILD}")
        # Kernels are chosen per CPU (and per batch shape), so a text's scores could depend
        # on its batch here though the onnx stage measured otherwise where it ran: checked
        # on this CPU; a graph that fails runs one text at a time.
        if self.batches and not self.batch_independent():
            self.batches = False

    def load(self, path: Path, precision: str, threads: int) -> int | None:
        """Load the graph at path for `precision`; the scores it gives per text, if known."""
        raise NotImplementedError

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits of one padded batch."""
        raise NotImplementedError

    def batch_independent(self) -> bool:
        """Whether PROBE_TEXTS get the same labels in one batch as one at a time, and
        probabilities within the runtime's batch_tolerance, on this CPU."""
        ids = self.encode(PROBE_TEXTS)[0]
        together, batches = self.logits(ids), self.batches
        self.batches = False
        try:
            alone = self.logits(ids)
        finally:
            self.batches = batches
        together, alone = (Predictions(self.labels, logits, []) for logits in (together, alone))
        return (together.top() == alone.top()
                and float(np.abs(together.probabilities - alone.probabilities).max())
                <= RUNTIMES[self.runtime].batch_tolerance)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text, cut at max_length exactly as training's tokenizer cuts
        them, and whether each was cut."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return ([encoding.ids for encoding in encodings],
                [bool(encoding.overflowing) for encoding in encodings])

    def logits(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits of every sequence, in input order, in padding-bounded batches."""
        logits = np.empty((len(input_ids), len(self.labels)), np.float32)
        size = self.batch_size if self.batches else 1
        for batch, ids, mask in padded_batches(input_ids, size, self.pad_id):
            logits[batch] = self.run(ids, mask)
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

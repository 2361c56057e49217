"""The TensorFlow prediction backend: a trained model folder (models/emotion, written by the
train stage) loaded with transformers, the model the pipeline trains, evaluates and exports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion.data import encode
from emotion.errors import PipelineError, first_line
from emotion.logits import logits_function, predict_logits
from emotion.model import load_classifier
from emotion.prediction.backend import DEFAULT_BATCH_SIZE


class TensorFlowBackend:
    """Token ids and logits of raw text from a trained model folder (a Backend)."""

    runtime = "tensorflow"  # float32
    batches = True  # padded batches give each text the scores it gets alone (within 1e-6)

    def __init__(self, folder: str | Path, batch_size: int = DEFAULT_BATCH_SIZE,
                 graph: bool = True):
        """graph: run the forward pass as one traced TensorFlow graph (tracing takes a few
        seconds once, then batches run about twice as fast as eagerly); False suits a few
        texts in a short-lived process."""
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.model = load_classifier(folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
        except Exception as error:
            raise PipelineError(f"{folder}: cannot load the tokenizer: {first_line(error)}"
                                ) from None
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.max_length = int(self.tokenizer.model_max_length)
        self.batch_size = batch_size
        self._forward = (logits_function(self.model) if graph else
                         lambda features: self.model(features, training=False).logits)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text, cut at max_length as in training, and whether each was
        cut (texts at the cap are encoded again without it to tell)."""
        ids = encode(self.tokenizer, texts, self.max_length)
        at_cap = [i for i, row in enumerate(ids) if len(row) == self.max_length]
        full = encode(self.tokenizer, [texts[i] for i in at_cap], None) if at_cap else []
        truncated = [False] * len(texts)
        for i, row in zip(at_cap, full):
            truncated[i] = len(row) > self.max_length
        return ids, truncated

    def logits(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits of every sequence, in input order."""
        return predict_logits(self._forward, input_ids, self.batch_size,
                              self.tokenizer.pad_token_id)

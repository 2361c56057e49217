"""Prediction: labels and probabilities of raw text from a model folder written by the train
stage (which holds the tokenizer, its max_length, the label names and the head type)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from emotion.data import encode
from emotion.errors import PipelineError, first_line
from emotion.inference import logits_function, predict_logits
from emotion.model import load_classifier


@dataclass
class Predictions:
    """Per text (rows): the logits, and whether the text was cut at max_length."""

    labels: list[str]
    logits: np.ndarray
    truncated: list[bool]

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, one row per text, columns in the order of `labels`."""
        return softmax(self.logits.astype(np.float64), axis=1)

    def top(self) -> list[str]:
        """The most probable label of each text."""
        return [self.labels[i] for i in self.logits.argmax(axis=1)]


class TextClassifier:
    """A trained model folder, ready to label raw text exactly as the pipeline encodes it."""

    def __init__(self, folder: str | Path, batch_size: int = 64, graph: bool = True):
        """graph: run the forward pass as one traced TensorFlow graph (tracing takes a few
        seconds once, then batches run about twice as fast as eagerly); False suits a few
        texts in a short-lived process."""
        from transformers import AutoTokenizer

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

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Logits (and so probabilities and labels) of each text, encoded as in training."""
        if not texts:
            return Predictions(self.labels, np.zeros((0, len(self.labels)), np.float32), [])
        ids = encode(self.tokenizer, texts, self.max_length)
        at_cap = [i for i, row in enumerate(ids) if len(row) == self.max_length]
        full = encode(self.tokenizer, [texts[i] for i in at_cap], None) if at_cap else []
        truncated = [False] * len(texts)
        for i, row in zip(at_cap, full):
            truncated[i] = len(row) > self.max_length
        logits = predict_logits(self._forward, ids, self.batch_size,
                                self.tokenizer.pad_token_id)
        return Predictions(self.labels, logits, truncated)

"""The seam between TextClassifier and its backends: what every backend offers (Backend),
what a prediction is (Predictions), and the length-sorted padding that batches run with. A
leaf module: it imports no backend and no classifier, so backends and their callers import it
and never each other."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

DEFAULT_BATCH_SIZE = 64  # texts per forward pass, at most
# Padded tokens a run of the model may compute beyond its real tokens, as a fraction of them
# (padded_batches); measured in docs/performance.md.
MAX_PADDING = 0.1


@dataclass
class Predictions:
    """Per text (rows): the logits, and whether the text was cut at max_length."""

    labels: list[str]
    logits: np.ndarray
    truncated: list[bool]

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, one row per text, columns in the order of `labels`."""
        logits = self.logits.astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def top(self, min_prob: float | None = None) -> list[str | None]:
        """The most probable label of each text; None where its probability is below
        `min_prob` (an uncertain text, e.g. for a person to label)."""
        best = self.logits.argmax(axis=1)
        if min_prob is None:
            return [self.labels[i] for i in best]
        confident = self.probabilities.max(axis=1) >= min_prob
        return [self.labels[i] if keep else None for i, keep in zip(best, confident)]


class Backend(Protocol):
    """A model that turns raw text into token ids and token ids into logits."""

    labels: list[str]
    max_length: int
    runtime: str  # what computes: a name of runtime_settings.RUNTIMES, or "tensorflow"
    batch_size: int  # texts a forward pass when it batches
    batches: bool  # False: one text at a time (its scores would depend on its batch)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text as training encoded it, and whether each was cut."""

    def logits(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits of every sequence, in input order."""


def padded_batches(input_ids: Sequence[Sequence[int]], batch_size: int, pad_id: int,
                   max_padding: float = MAX_PADDING
                   ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The sequences in runs for the model: each run's positions in input_ids, its ids
    padded with pad_id to its longest sequence, and its attention mask (int32 arrays).
    Sorted by length, a run takes the next sequence while it holds fewer than batch_size
    and its padded tokens stay within (1 + max_padding) times its real tokens, so texts of
    mixed lengths never pay for padding beyond that bound (a text's scores do not depend on
    its run: the onnx stage measures it)."""
    order = sorted(range(len(input_ids)), key=lambda i: (len(input_ids[i]), i))
    runs, run, tokens = [], [], 0
    for index in order:
        length = len(input_ids[index])
        if run and (len(run) == batch_size
                    or (len(run) + 1) * length > (1 + max_padding) * (tokens + length)):
            runs.append(run)
            run, tokens = [], 0
        run.append(index)
        tokens += length
    if run:
        runs.append(run)
    for batch in runs:
        width = len(input_ids[batch[-1]])
        ids = np.full((len(batch), width), pad_id, np.int32)
        mask = np.zeros((len(batch), width), np.int32)
        for row, index in enumerate(batch):
            ids[row, :len(input_ids[index])] = input_ids[index]
            mask[row, :len(input_ids[index])] = 1
        yield batch, ids, mask

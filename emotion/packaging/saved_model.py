"""The raw-text SavedModel: BERT tokenization inside the TensorFlow graph (tensorflow-text's
FastBertTokenizer with the model folder's vocabulary), then the classifier.

Signatures of the saved model:
- serving_default: text (tf.string [None]) -> probabilities (float32 [None, num_labels]),
  label (tf.string [None])
- tokenize: text -> input_ids, attention_mask (int32 [None, None], padded with the pad id)
Loading it needs TensorFlow and tensorflow-text (for the tokenizer ops), nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow_text as tf_text

from emotion.errors import PipelineError
from emotion.tensorflow_backend import TensorFlowBackend

# transformers' BertNormalizer, step by step, since FastBertTokenizer's own normalisation
# differs (it case-folds with compatibility mappings: "ß" -> "ss", "ﬁ" -> "fi", "½" -> "1⁄2"):
# clean_text deletes U+FFFD and control/format characters (Unicode category C, but not tab,
# newline, carriage return), where FastBertTokenizer would put a space and split the word...
_DELETED = r"\x{FFFD}|[^\P{C}\t\n\r]"
# ...handle_chinese_chars puts spaces around every CJK ideograph (transformers'
# _is_chinese_char ranges)...
_CJK = (r"([\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}])")
# ...and, for an uncased model, strip_accents (NFD, then delete nonspacing marks) and lowercase,
# one character at a time: TensorFlow's lower() would make a word-final capital sigma "ς".
_ACCENTS = r"\p{Mn}"


class GraphTokenizer(tf.Module):
    """A transformers BERT fast tokenizer's encoding ([CLS] wordpieces [SEP], cut at
    max_length) as TensorFlow ops."""

    def __init__(self, tokenizer: Any, max_length: int):
        super().__init__()
        vocab = tokenizer.get_vocab()
        ordered = sorted(vocab, key=vocab.get)
        if [vocab[token] for token in ordered] != list(range(len(ordered))):
            raise PipelineError("the tokenizer's vocabulary ids are not 0..n-1")
        self.lower_case = bool(getattr(tokenizer, "do_lower_case", False))
        self.wordpiece = tf_text.FastBertTokenizer(
            vocab=ordered, token_out_type=tf.int32, unknown_token=tokenizer.unk_token)
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id, self.max_length = tokenizer.pad_token_id, max_length

    def __call__(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        text = tf.strings.regex_replace(text, _DELETED, "")
        text = tf.strings.regex_replace(text, _CJK, r" \1 ")
        if self.lower_case:
            text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), _ACCENTS, "")
            text = tf.strings.lower(tf.strings.regex_replace(text, "Σ", "σ"), encoding="utf-8")
        pieces = self.wordpiece.tokenize(text)
        if isinstance(pieces, tf.RaggedTensor) and pieces.ragged_rank > 1:
            pieces = pieces.merge_dims(1, -1)
        pieces = pieces[:, : self.max_length - 2]
        batch = tf.shape(text)[0]
        ids = tf.concat([tf.fill([batch, 1], self.cls_id), pieces,
                         tf.fill([batch, 1], self.sep_id)], axis=1)
        input_ids = ids.to_tensor(default_value=self.pad_id)
        attention_mask = tf.ones_like(ids).to_tensor(default_value=0)
        return {"input_ids": input_ids, "attention_mask": attention_mask}


class ServingModule(tf.Module):
    """Text in, label probabilities and label out, from a trained model loaded on the
    tensorflow backend."""

    def __init__(self, backend: TensorFlowBackend):
        super().__init__()
        # The Keras model is called, not tracked: tracking it would make tf.saved_model.save
        # trace and store every Keras layer's own call functions (most of the export's time),
        # which nothing here uses. Its variables are tracked, so they are saved and restored.
        self._forward = backend.model.__call__
        self.weights = list(backend.model.weights)
        self.tokenizer = GraphTokenizer(backend.tokenizer, backend.max_length)
        self.labels = tf.constant(backend.labels)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")],
                 autograph=False)  # see emotion.training.train_step_function
    def tokenize(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.tokenizer(text)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")],
                 autograph=False)  # see emotion.training.train_step_function
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self._forward(self.tokenizer(text), training=False).logits
        return {"probabilities": tf.nn.softmax(logits),
                "label": tf.gather(self.labels, tf.argmax(logits, axis=-1))}


def export(backend: TensorFlowBackend, destination: str | Path) -> None:
    """Write the SavedModel of a loaded model folder to `destination`."""
    module = ServingModule(backend)
    tf.saved_model.save(module, str(destination), signatures={
        "serving_default": module.serve, "tokenize": module.tokenize})

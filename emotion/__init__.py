"""Emotion detection for English text: the code shared by the DVC stages, `emotion-predict`
and the SavedModel and ONNX exports.

Modules, one concern each:
- errors:  PipelineError and the one-line-error entry point
- params:  reading and validating params.yaml
- files:   the pipeline's file layout and all-or-nothing writes
- data:    splits on disk, the tokenizer, the one encoding function, tf.data batches
- model:   classifier heads: building, seeding, saving and reloading
- training: the learning-rate schedule and the static-shape training step
- inference: logits of token ids, loss and accuracy
- scores:  the scores a split is reported with (accuracy, loss, F1)
- predict: labels and probabilities of raw text (TextClassifier), from one of two backends:
  - onnx_runtime: the ONNX runtime folder on onnxruntime (no TensorFlow, the default)
  - tensorflow_backend: the trained model folder on TensorFlow
- onnx_export: the ONNX runtime folder of a trained model (tf2onnx, int8 quantization)
- serving: the raw-text TensorFlow SavedModel (tokenizer inside the graph)
- cli:     the `emotion-predict` command
"""

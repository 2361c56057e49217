"""Emotion detection for English text: the code shared by the DVC stages, `emotion-predict`
and the SavedModel export.

Modules, one concern each:
- errors:  PipelineError and the one-line-error entry point
- params:  reading and validating params.yaml
- files:   the pipeline's file layout and all-or-nothing writes
- data:    splits on disk, the tokenizer, the one encoding function, tf.data batches
- model:   classifier heads: building, seeding, saving and reloading
- training: the learning-rate schedule and the static-shape training step
- inference: logits of token ids, loss and accuracy
- predict: labels and probabilities of raw text from a saved model folder
- serving: the raw-text TensorFlow SavedModel (tokenizer inside the graph)
- cli:     the `emotion-predict` command
"""

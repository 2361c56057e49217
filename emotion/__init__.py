"""Emotion detection for English text: the library of the DVC stages (stages/), the
`emotion-predict` command and the tools. Importing it imports nothing.

Shared modules, one concern each:
- errors:   PipelineError and UsageError, and the one-line-error entry point
- params:   reading and validating params.yaml
- paths:    every file and folder the pipeline reads or writes
- files:    all-or-nothing writes, paths a user named, figures, the pipeline's JSON files
- process:  the settings of every process that runs TensorFlow (set by entry points)
- hardware: the CPU's model name and instruction-set flags
- data:     splits on disk, the tokenizer, the one encoding function, tf.data batches
- model:    classifier heads (TensorFlow): building, seeding, saving and reloading
- logits:   a TensorFlow classifier's logits of token ids, in length-sorted batches
- tensorflow_backend: the TensorFlow backend of TextClassifier (the trained model folder)
- predict:  the public import path of TextClassifier (emotion.prediction.classifier)

Subpackages by concern, and by install:
- training:   the train stage's mechanics (TensorFlow)
- metrics:    scores and calibration (NumPy, SciPy, scikit-learn)
- prediction: TextClassifier, the ONNX backend and emotion-predict (the light install)
- packaging:  the published folders: models/emotion, models/onnx, models/serving
"""

"""Prediction, the light install (`pip install ".[predict]"`: ONNX Runtime and tokenizers; no
TensorFlow, transformers, SciPy or pandas, checked by `make lint`):
- classifier:   TextClassifier (one entry point, backends behind it) and Predictions
- onnx_backend: the ONNX runtime folder on onnxruntime (the default backend)
- cli:          the `emotion-predict` command
The TensorFlow backend (emotion.tensorflow_backend) needs the full install and lives outside
this package; TextClassifier loads it only when asked for. Importing this package imports
nothing.
"""

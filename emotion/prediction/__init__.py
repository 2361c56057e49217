"""Prediction, the light install (`pip install ".[predict]"`: ONNX Runtime and tokenizers; no
TensorFlow, transformers, SciPy or pandas, checked by `make lint`):
- classifier:       TextClassifier (one entry point, backends behind it)
- backend:          the seam: Predictions, the Backend protocol, padding-bounded batches
- runtime_settings: runtime.json, and the runtimes (engine and precision) a folder runs on
- runtime_choice:   which runtime runs here, and why
- runtime_folder:   what every engine of a runtime folder shares (tokenizer, batches, checks)
- onnx_backend:     ONNX Runtime (float32, int8)
- openvino_backend: OpenVINO (float32, bfloat16; the `openvino` extra)
- readers, cli:     the `emotion-predict` command and its input formats
- corpus, label_cli: labelling a parquet dataset on Dask, `emotion-label` (the `cluster` extra)
The TensorFlow backend (emotion.tensorflow_backend) needs the full install and lives outside
this package; TextClassifier loads it only when asked for. Importing this package imports
nothing.
"""

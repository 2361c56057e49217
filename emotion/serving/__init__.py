"""HTTP serving of an ONNX runtime folder (`emotion-serve`, `pip install ".[serve]"`): no
TensorFlow, no transformers, and no DVC stage depends on it.
- app:      the routes (Open Inference Protocol / KServe V2, TF Serving's REST predict,
            Prometheus metrics, the page at /)
- protocol: request and response bodies, checked field by field
- batcher:  batching across requests, with a bounded queue
- cli:      emotion-serve
"""

"""What the pipeline publishes from a trained model (stages package, export and onnx):
- model_folder: models/emotion, the trained model with the temperature folded in
- model_card:   the model cards (README.md) of models/emotion and models/onnx
- onnx_folder:  models/onnx, the ONNX runtime folder (tf2onnx, int8 quantization)
- saved_model:  models/serving, the raw-text TensorFlow SavedModel (tokenizer in the graph)
"""

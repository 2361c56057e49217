"""The scores the pipeline reports (NumPy, SciPy, scikit-learn; no TensorFlow):
- scores:      accuracy, loss, macro and weighted F1 of logits
- calibration: temperature scaling, expected calibration error, reliability, risk-coverage
"""

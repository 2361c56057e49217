"""The public import path of the facade: `from emotion.predict import TextClassifier` (README,
model cards). The code lives in emotion.prediction.classifier."""

from emotion.prediction.classifier import BACKENDS, Predictions, TextClassifier

__all__ = ["BACKENDS", "Predictions", "TextClassifier"]

"""The request and response bodies the server speaks, checked field by field:
- the Open Inference Protocol (KServe V2): `POST /v2/models/{name}/infer` with one input
  `text` (BYTES, shape [N]); outputs `label` (BYTES [N]) and `probabilities` (FP32
  [N, labels], row-major);
- TF Serving's REST predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`
  (texts, or objects with a `text` key) -> `{"predictions": [{"label", "probabilities"}]}`,
  what the SavedModel's serving signature returns per text.
Both take `"parameters": {"min_prob": p}`: below it a text's label is empty (OIP) or null
(TF Serving), as `emotion-predict --min-prob` gives null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emotion.errors import first_line
from emotion.prediction.classifier import Predictions


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line message naming the field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """What one request may hold."""
    max_texts: int
    max_text_bytes: int


def parse_json(body: bytes) -> Any:
    """The request body as JSON; a RequestError (400) naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"body: not UTF-8 (byte {error.start})") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise RequestError(400, f"body: not JSON ({first_line(error)})") from None
    except RecursionError:
        raise RequestError(400, "body: JSON nested too deeply") from None


def check_texts(texts: Any, field: str, limits: Limits) -> list[str]:
    """`texts` as a list of non-empty strings within the limits, or a RequestError."""
    if not isinstance(texts, list):
        raise RequestError(400, f"{field}: expected a list of texts")
    if not texts:
        raise RequestError(400, f"{field}: no texts")
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{field}: {len(texts)} texts, more than the limit of "
                                f"{limits.max_texts} a request")
    for index, text in enumerate(texts):
        where = f"{field}[{index}]"
        if not isinstance(text, str):
            raise RequestError(400, f"{where}: expected a string, got {type(text).__name__}")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise RequestError(400, f"{where}: not valid Unicode (a lone surrogate)") from None
        if size > limits.max_text_bytes:
            raise RequestError(413, f"{where}: {size} bytes, more than the limit of "
                                    f"{limits.max_text_bytes} a text")
        if not text.strip():
            raise RequestError(400, f"{where}: empty text")
    return texts


def min_prob(body: dict) -> float | None:
    """The request's parameters.min_prob, if any, checked."""
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, "parameters: expected an object")
    value = parameters.get("min_prob")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RequestError(400, f"parameters.min_prob: expected a number in [0, 1], got "
                                f"{json.dumps(value)}")
    return float(value)


def oip_texts(body: Any, limits: Limits) -> list[str]:
    """The texts of an OIP infer request."""
    if not isinstance(body, dict):
        raise RequestError(400, "body: expected a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, "inputs: expected one input, named text")
    tensor = inputs[0]
    if tensor.get("name") != "text":
        raise RequestError(400, f"inputs[0].name: expected text, got "
                                f"{json.dumps(tensor.get('name'))}")
    if tensor.get("datatype") != "BYTES":
        raise RequestError(400, f"inputs[0].datatype: expected BYTES, got "
                                f"{json.dumps(tensor.get('datatype'))}")
    texts = check_texts(tensor.get("data"), "inputs[0].data", limits)
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(type(size) is int for size in shape)
            and shape in ([len(texts)], [len(texts), 1])):
        raise RequestError(400, f"inputs[0].shape: expected [{len(texts)}] or "
                                f"[{len(texts)}, 1] (the number of texts), got "
                                f"{json.dumps(shape)}")
    return texts


def oip_response(name: str, body: dict, predictions: Predictions, threshold: float | None
                 ) -> dict:
    """An OIP infer response: label (BYTES [N]; empty below min_prob) and probabilities
    (FP32 [N, labels])."""
    top, probabilities = predictions.top(threshold), predictions.probabilities
    response = {"model_name": name, "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [len(top)],
         "data": [label or "" for label in top]},
        {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape),
         "data": probabilities.ravel().tolist()},
    ]}
    if "id" in body:
        response["id"] = body["id"]
    return response


def predict_texts(body: Any, limits: Limits) -> list[str]:
    """The texts of a TF Serving predict request (instances: texts or {"text": ...})."""
    if not isinstance(body, dict) or "instances" not in body:
        raise RequestError(400, "instances: missing (TF Serving's row format)")
    instances = body["instances"]
    if isinstance(instances, list):
        instances = [item.get("text") if isinstance(item, dict) else item
                     for item in instances]
    return check_texts(instances, "instances", limits)


def predict_response(predictions: Predictions, threshold: float | None) -> dict:
    """A TF Serving predict response: per text, its label (null below min_prob) and its
    probabilities in the model's label order."""
    return {"predictions": [
        {"label": label, "probabilities": row.tolist()}
        for label, row in zip(predictions.top(threshold), predictions.probabilities)]}

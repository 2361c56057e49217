"""The request and response bodies the server speaks, checked field by field:
- the Open Inference Protocol (KServe V2): `POST /v2/models/{name}/infer` with one input
  `text` (BYTES, shape [N]); outputs `label` (BYTES [N]) and `probabilities` (FP32
  [N, labels], row-major);
- TF Serving's REST predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`
  (texts, or objects with a `text` key) -> `{"predictions": [{"label", "probabilities"}]}`,
  what the SavedModel's serving signature returns per text.
Both take `"parameters": {"min_prob": p}`: below it a text's label is empty (OIP) or null
(TF Serving), as `emotion-predict --min-prob` gives null.

OIP requests may use Triton's binary tensor extension, as `tritonclient` does by default: an
`Inference-Header-Content-Length: n` header, n bytes of JSON, then each binary input's bytes
(its `parameters.binary_data_size`); BYTES elements are a 4-byte little-endian length and the
bytes. Outputs are answered the same way where asked (`binary_data` in an output's
parameters, or `binary_data_output` in the request's), with the same header; FP32 as
little-endian floats, row-major.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion.errors import first_line
from emotion.prediction.backend import Predictions


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


BINARY_HEADER = "Inference-Header-Content-Length"
OUTPUTS = ("label", "probabilities")


def parse_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """A request body as (JSON, the binary tensors after it: b"" without the extension)."""
    if header_length is None:
        return parse_json(body), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise RequestError(400, f"{BINARY_HEADER}: expected the JSON header's length in "
                                f"bytes (at most {len(body)}), got {header_length[:20]!r}")
    length = int(header_length)
    return parse_json(body[:length]), body[length:]


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


def parameters_of(holder: dict, field: str) -> dict:
    """The `parameters` object of a request, input or output ({} if none), checked."""
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RequestError(400, f"{field}: expected an object")
    return parameters


def min_prob(body: dict) -> float | None:
    """The request's parameters.min_prob, if any, checked."""
    value = parameters_of(body, "parameters").get("min_prob")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RequestError(400, f"parameters.min_prob: expected a number in [0, 1], got "
                                f"{json.dumps(value)}")
    return float(value)


def binary_texts(data: bytes, field: str) -> list[str]:
    """The elements of a binary BYTES tensor (each a 4-byte little-endian length, then the
    bytes), as texts."""
    texts, offset = [], 0
    while offset < len(data):
        where = f"{field}[{len(texts)}]"
        if offset + 4 > len(data):
            raise RequestError(400, f"{where}: a length prefix cut short")
        (size,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + size > len(data):
            raise RequestError(400, f"{where}: {size} bytes announced, "
                                    f"{len(data) - offset - 4} left")
        try:
            texts.append(data[offset + 4:offset + 4 + size].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise RequestError(400, f"{where}: not UTF-8 (byte {error.start})") from None
        offset += 4 + size
    return texts


def requested_outputs(body: dict) -> dict[str, bool]:
    """The outputs an OIP request asks for (all if it names none), each with whether it is
    answered as binary data."""
    every = parameters_of(body, "parameters").get("binary_data_output", False)
    if not isinstance(every, bool):
        raise RequestError(400, "parameters.binary_data_output: expected true or false")
    outputs = body.get("outputs")
    if outputs is None:
        return dict.fromkeys(OUTPUTS, every)
    if not isinstance(outputs, list) or not outputs:
        raise RequestError(400, "outputs: expected a list of outputs by name")
    asked = {}
    for index, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise RequestError(400, f"outputs[{index}].name: expected one of "
                                    f"{', '.join(OUTPUTS)}, got {json.dumps(name)}")
        binary = parameters_of(output, f"outputs[{index}].parameters").get("binary_data",
                                                                           every)
        if not isinstance(binary, bool):
            raise RequestError(400, f"outputs[{index}].parameters.binary_data: expected true "
                                    "or false")
        asked[name] = binary
    return asked


def oip_texts(body: Any, limits: Limits, binary: bytes = b"") -> list[str]:
    """The texts of an OIP infer request (with the binary tensors after its JSON, if any)."""
    if not isinstance(body, dict):
        raise RequestError(400, "body: expected a JSON object")
    if "id" in body and not isinstance(body["id"], str):  # echoed in the response
        raise RequestError(400, f"id: expected a string, got {type(body['id']).__name__}")
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
    size = parameters_of(tensor, "inputs[0].parameters").get("binary_data_size")
    if size is None and binary:
        raise RequestError(400, "inputs[0].parameters.binary_data_size: missing, though "
                                "binary data follows the JSON")
    if size is not None:
        if type(size) is not int or size != len(binary):
            raise RequestError(400, f"inputs[0].parameters.binary_data_size: expected "
                                    f"{len(binary)} (the bytes after the JSON header), got "
                                    f"{json.dumps(size)}")
        if "data" in tensor:
            raise RequestError(400, "inputs[0].data: given with binary data too")
        tensor = {**tensor, "data": binary_texts(binary, "inputs[0].data")}
    texts = check_texts(tensor.get("data"), "inputs[0].data", limits)
    requested_outputs(body)
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(type(size) is int for size in shape)
            and shape in ([len(texts)], [len(texts), 1])):
        raise RequestError(400, f"inputs[0].shape: expected [{len(texts)}] or "
                                f"[{len(texts)}, 1] (the number of texts), got "
                                f"{json.dumps(shape)}")
    return texts


def oip_response(name: str, body: dict, predictions: Predictions, threshold: float | None
                 ) -> tuple[dict, bytes]:
    """An OIP infer response: label (BYTES [N]; empty below min_prob) and probabilities
    (FP32 [N, labels]), those the request asked for; and the binary data after the JSON of
    the outputs asked as binary (b"" if none)."""
    top, probabilities = predictions.top(threshold), predictions.probabilities
    labels = [(label or "").encode() for label in top]
    tensors = {
        "label": ({"name": "label", "datatype": "BYTES", "shape": [len(top)]},
                  [label.decode() for label in labels],
                  b"".join(struct.pack("<I", len(label)) + label for label in labels)),
        "probabilities": ({"name": "probabilities", "datatype": "FP32",
                           "shape": list(probabilities.shape)},
                          probabilities.ravel().tolist(),
                          np.ascontiguousarray(probabilities, "<f4").tobytes()),
    }
    outputs, binary = [], []
    for output, as_binary in requested_outputs(body).items():
        tensor, data, raw = tensors[output]
        if as_binary:
            outputs.append({**tensor, "parameters": {"binary_data_size": len(raw)}})
            binary.append(raw)
        else:
            outputs.append({**tensor, "data": data})
    response = {"model_name": name, "outputs": outputs}
    if "id" in body:
        response["id"] = body["id"]
    return response, b"".join(binary)


def predict_texts(body: Any, limits: Limits, binary: bytes = b"") -> list[str]:
    """The texts of a TF Serving predict request (instances: texts or {"text": ...})."""
    if binary:
        raise RequestError(400, f"{BINARY_HEADER}: binary tensors are for the OIP routes")
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

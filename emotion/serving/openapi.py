"""The server's OpenAPI 3.0 document (GET /v2/openapi.json, rendered at /v2/docs): the Open
Inference Protocol's REST routes as its published specification describes them (health,
server and model metadata, model readiness and inference, with and without a version), TF
Serving's `:predict`, /metrics and the page. Every route lists each status it answers with;
every error is `{"error": "<one line>"}`. Schemathesis checks the live server against it in
the suite (tests/test_serve.py)."""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string", "description": "one line"}}}
ERROR_STATUSES = {
    "400": "the request is not what the route takes (the message names the field)",
    "404": "no such model, version or route",
    "405": "the route does not take this method",
    "408": "the body did not arrive within the body timeout",
    "413": "more texts, or longer ones, than the server's limits",
    "500": "the model run failed (only this batch's requests)",
    "503": "the model is loading, or the queue is full (Retry-After)",
}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict:
    return {status: {"description": ERROR_STATUSES[status], **_json({"$ref":
            "#/components/schemas/Error"})} for status in statuses}


# Triton's binary tensor extension (protocol.py): a JSON header, then raw tensors.
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _operation(summary: str, ok: dict, *errors: str, body: str | None = None,
               parameters: tuple[str, ...] = (), binary: bool = False) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in parameters],
        "responses": {"200": ok, **_errors(*errors)}}
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(
            {"$ref": f"#/components/schemas/{body}"})}
    if binary:
        operation["requestBody"]["content"].update(BINARY)
        operation["responses"]["200"]["content"].update(BINARY)
    return operation


def document(name: str, version: str, max_texts: int, max_text_bytes: int) -> dict:
    """The OpenAPI document of a server serving model `name` at `version` with these
    limits."""
    text = {"type": "string", "minLength": 1, "maxLength": max_text_bytes // 4,
            "pattern": r"\S", "description": f"a text of at most {max_text_bytes} UTF-8 "
            "bytes, not only white space"}
    texts = {"type": "array", "items": text, "minItems": 1, "maxItems": max_texts}
    infer_request = {
        "type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/Parameters"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"type": "string", "enum": ["text"]},
                    "datatype": {"type": "string", "enum": ["BYTES"]},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 1},
                              "minItems": 1, "maxItems": 2, "description":
                              "[N] or [N, 1] for N texts"},
                    "parameters": {"type": "object", "properties": {"binary_data_size": {
                        "type": "integer", "minimum": 0}}},
                    "data": texts}}},
            "outputs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "enum": ["label", "probabilities"]},
                    "parameters": {"type": "object", "properties": {
                        "binary_data": {"type": "boolean"}}}}}}}}
    tensor = {"type": "object", "required": ["name", "datatype", "shape"],
              "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}},
                             "parameters": {"type": "object"},
                             "data": {"type": "array", "items": {
                                 "oneOf": [{"type": "string"}, {"type": "number"}]}}}}
    infer_response = {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": tensor}}}
    predict_request = {"type": "object", "required": ["instances"], "properties": {
        "parameters": {"$ref": "#/components/schemas/Parameters"},
        "instances": {"type": "array", "minItems": 1, "maxItems": max_texts, "items": {
            "oneOf": [text, {"type": "object", "required": ["text"],
                             "properties": {"text": text}}]}}}}
    predict_response = {"type": "object", "required": ["predictions"], "properties": {
        "predictions": {"type": "array", "items": {
            "type": "object", "required": ["label", "probabilities"], "properties": {
                "label": {"type": "string", "nullable": True},
                "probabilities": {"type": "array", "items": {"type": "number"}}}}}}}
    model_metadata = {"type": "object", "required": ["name", "versions", "platform",
                                                     "inputs", "outputs"], "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
        "parameters": {"type": "object"}}}
    ready = {"type": "object", "required": ["ready"], "properties": {
        "ready": {"type": "boolean"}, "name": {"type": "string"}}}
    ready_answers = {"description": "ready", **_json(ready)}
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _operation("The server is live", {
            "description": "live", **_json({"type": "object", "required": ["live"],
                                            "properties": {"live": {"type": "boolean"}}})})},
        "/v2/health/ready": {"get": _operation("The model is loaded and the server not "
                                               "draining", ready_answers, "503")},
        "/v2": {"get": _operation("Server metadata", {"description": "metadata", **_json({
            "type": "object", "required": ["name", "version", "extensions"], "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}})})},
    }
    for prefix, parameters in (("/v2/models/{name}", ("name",)),
                               ("/v2/models/{name}/versions/{version}", ("name", "version"))):
        paths[prefix] = {"get": _operation("Model metadata", {
            "description": "metadata", **_json(model_metadata)}, "404", "503",
            parameters=parameters)}
        paths[f"{prefix}/ready"] = {"get": _operation(
            "The model is ready", ready_answers, "404", "503", parameters=parameters)}
        paths[f"{prefix}/infer"] = {"post": _operation(
            "Label texts (Open Inference Protocol): label (BYTES [N]; empty below min_prob) "
            "and probabilities (FP32 [N, labels]); JSON, or Triton's binary tensor extension "
            "(the Inference-Header-Content-Length header)", {"description": "labels", **_json(
                infer_response)}, "400", "404", "408", "413", "500", "503",
            body="InferenceRequest", parameters=parameters, binary=True)}
    paths["/v1/models/{name}:predict"] = {"post": _operation(
        "Label texts (TF Serving's REST predict)", {"description": "labels", **_json(
            predict_response)}, "400", "404", "408", "413", "500", "503",
        body="PredictRequest", parameters=("name",))}
    paths["/metrics"] = {"get": _operation("Prometheus metrics", {
        "description": "the exposition", "content": {"text/plain": {"schema": {
            "type": "string"}}}})}
    paths["/"] = {"get": _operation("A page to try the model", {
        "description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}})}
    return {
        "openapi": "3.0.3",
        "info": {"title": "emotion-serve", "version": version, "description":
                 "The Open Inference Protocol (KServe V2) and TF Serving's REST predict for "
                 f"the emotion classifier {name!r}."},
        "paths": paths,
        "components": {
            "parameters": {
                "name": {"name": "name", "in": "path", "required": True,
                         "schema": {"type": "string", "enum": [name]}},
                "version": {"name": "version", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": [version]}}},
            "schemas": {
                "Error": ERROR,
                "Parameters": {"type": "object", "properties": {"min_prob": {
                    "type": "number", "minimum": 0, "maximum": 1, "description": "below "
                    "it, a text's label is empty (OIP) or null (predict)"},
                    "binary_data_output": {"type": "boolean", "description": "every "
                                           "output as binary data (OIP)"}}},
                "InferenceRequest": infer_request,
                "PredictRequest": predict_request}}}

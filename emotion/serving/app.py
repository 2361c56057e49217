"""The HTTP server's routes (a Starlette ASGI app): the Open Inference Protocol (KServe V2),
TF Serving's REST predict, Prometheus metrics, and a page for people at `/`.

The model (an ONNX runtime folder, on the onnx backend) loads in a thread when the server
starts; until it is loaded and has labelled one text, `/v2/health/ready` and the model's
ready route answer 503 and inference answers 503 with Retry-After. A model that cannot load,
whatever the reason, ends the process with a one-line error and exit status 1. Every error
is a JSON body `{"error": "<one line>"}` with its status, counted in /metrics; a body is
parsed off the event loop, and must arrive within the body timeout (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from emotion.errors import PipelineError, first_line
from emotion.prediction.backend import Predictions
from emotion.serving import openapi, protocol
from emotion.serving.batcher import Batcher, Overloaded
from emotion.serving.connections import draining
from emotion.serving.protocol import Limits, RequestError

VERSION = "1"
# The model metadata's platform, by engine (KServe's and Triton's names).
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "tensorflow":
             "tensorflow_savedmodel"}
RETRY_AFTER = "1"  # seconds, in 503 answers
# The tests' fault hook: a model batch holding this exact text fails (as an exception in the
# model run would), so that its requests' 500s can be checked. Unset: no effect.
FAULT_VARIABLE = "EMOTION_SERVE_FAULT"
# /v2/docs: Swagger UI (swagger-ui-bundle's files, served from the package: no CDN) on the
# server's OpenAPI document.
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>emotion-serve API</title>
<link rel="stylesheet" href="/v2/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/v2/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/v2/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


@dataclass
class Settings:
    """What `emotion-serve` was asked to serve, and how."""
    model: Path
    name: str = "emotion"
    runtime: str | None = None  # None: the choice rule (emotion.prediction.runtime_choice)
    threads: int = 0
    max_batch: int = 64
    max_wait_ms: float = 0.0
    max_queue: int = 1024
    max_texts: int = 256
    max_text_bytes: int = 4096
    header_timeout: float = 10.0  # seconds for a request's line and headers
    body_timeout: float = 30.0  # seconds for its body
    keep_alive_timeout: float = 5.0  # an idle connection between requests
    max_connections: int = 512
    max_body_bytes: int = 64 * 1024 * 1024  # request bodies being read, all together


class Metrics:
    """The server's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("emotion_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("emotion_request_seconds", "Request latency by route",
                                 ["route"], registry=self.registry)
        self.batch_size = Histogram("emotion_batch_texts", "Texts per model batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                    registry=self.registry)
        self.queue = Gauge("emotion_queue_texts", "Texts waiting for a batch",
                           registry=self.registry)


def create_app(settings: Settings) -> Starlette:
    """The server for `settings`."""
    from emotion.prediction.classifier import TextClassifier

    metrics = Metrics()
    limits = Limits(settings.max_texts, settings.max_text_bytes)
    state: dict = {"ready": False, "body_bytes": 0}
    page = resources.files("emotion.serving").joinpath("page.html").read_text("utf-8")

    def load() -> None:
        classifier = TextClassifier(settings.model, batch_size=settings.max_batch,
                                    runtime=settings.runtime, threads=settings.threads)
        classifier.predict(["warming up"])
        state["classifier"] = classifier
        print(f"emotion-serve: {settings.model} as {settings.name!r} on {classifier.runtime} "
              f"({classifier.why})", file=sys.stderr, flush=True)

    def run_model(texts: list[str]):
        if os.environ.get(FAULT_VARIABLE) in texts:
            raise RuntimeError(f"{FAULT_VARIABLE}: a failure injected by a test")
        return state["classifier"].predict(texts).logits

    async def startup() -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, load)
        except PipelineError as failure:  # a damaged folder: the server cannot serve
            print(f"error: {first_line(failure)}", file=sys.stderr, flush=True)
            os._exit(1)
        except BaseException as failure:  # anything else (ONNX Runtime, memory): the same
            print(f"error: {settings.model}: the model cannot load "
                  f"({type(failure).__name__}: {first_line(failure)})", file=sys.stderr,
                  flush=True)
            os._exit(1)
        state["batcher"] = batcher = Batcher(
            run_model, settings.max_batch,
            settings.max_wait_ms / 1000, settings.max_queue, metrics.batch_size.observe)
        metrics.queue.set_function(lambda: batcher.queued)
        batcher.start()
        state["ready"] = True

    @contextlib.asynccontextmanager
    async def begin(app: Starlette) -> AsyncIterator[None]:  # load in the background
        task = asyncio.get_running_loop().create_task(startup())
        yield
        task.cancel()
        if "batcher" in state:
            await state["batcher"].stop()

    def error(status: int, message: str, route: str) -> JSONResponse:
        metrics.requests.labels(route, str(status)).inc()
        headers = {"Retry-After": RETRY_AFTER} if status == 503 else None
        return JSONResponse({"error": message}, status, headers=headers)

    async def read_body(request: Request) -> bytes:
        limit = limits.max_texts * (limits.max_text_bytes * 6 + 16) + 4096  # JSON-escaped
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"body: {declared} bytes, more than {limit}")
        body = bytearray()
        try:
            async with asyncio.timeout(settings.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    state["body_bytes"] += len(chunk)
                    if len(body) > limit:
                        raise RequestError(413, f"body: more than {limit} bytes")
                    if state["body_bytes"] > settings.max_body_bytes:
                        raise RequestError(503, f"server: busy ({state['body_bytes']} body "
                                                f"bytes in flight, limit "
                                                f"{settings.max_body_bytes}); retry later")
        except TimeoutError:
            raise RequestError(408, f"body: not received within {settings.body_timeout:g} s"
                               ) from None
        finally:
            state["body_bytes"] -= len(body)
        return bytes(body)

    async def until_disconnect(request: Request, work: Awaitable) -> Any:
        """The result of `work`; ClientDisconnect, with `work` cancelled (its texts dropped
        before they run), if the client goes away first."""
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if not task.done():
            task.cancel()
            raise ClientDisconnect()
        return task.result()

    def model_named(request: Request) -> None:
        name = request.path_params["name"]
        if name != settings.name:
            raise RequestError(404, f"model {name!r}: not served here (this server serves "
                                    f"{settings.name!r})")
        version = request.path_params.get("version", VERSION)
        if version != VERSION:
            raise RequestError(404, f"model {name!r} version {version!r}: not served here "
                                    f"(this server serves version {VERSION!r})")

    async def infer(request: Request, route: str, parse, respond) -> Response:
        start = time.perf_counter()
        try:
            model_named(request)
            if not state["ready"]:
                raise RequestError(503, "model: loading")
            body, binary = await asyncio.to_thread(
                protocol.parse_body, await read_body(request),
                request.headers.get(protocol.BINARY_HEADER))
            texts = parse(body, limits, binary)
            threshold = protocol.min_prob(body)
            logits = await until_disconnect(request, state["batcher"].submit(texts))
        except RequestError as refused:
            return error(refused.status, str(refused), route)
        except Overloaded as full:
            return error(503, f"server: busy ({full}); retry later", route)
        except ClientDisconnect:
            metrics.requests.labels(route, "499").inc()
            return Response(status_code=499)
        except Exception as failure:  # a failed model run (its batch's requests only), or a
            # defect: either way a JSON 500, logged
            print(f"error: {route}: {type(failure).__name__}: {first_line(failure)}",
                  file=sys.stderr, flush=True)
            return error(500, f"server: failed ({type(failure).__name__}: "
                              f"{first_line(failure)})", route)
        metrics.requests.labels(route, "200").inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return respond(body, Predictions(state["classifier"].labels, logits, []), threshold)

    def oip_answer(body: dict, predictions: Predictions, threshold: float | None) -> Response:
        answer, binary = protocol.oip_response(settings.name, body, predictions, threshold)
        if not binary:
            return JSONResponse(answer)
        header = JSONResponse(answer).body
        return Response(header + binary, media_type="application/octet-stream",
                        headers={protocol.BINARY_HEADER: str(len(header))})

    async def oip_infer(request: Request) -> Response:
        return await infer(request, "v2_infer", protocol.oip_texts, oip_answer)

    async def tf_predict(request: Request) -> Response:
        return await infer(request, "v1_predict", protocol.predict_texts,
                           lambda body, predictions, threshold: JSONResponse(
                               protocol.predict_response(predictions, threshold)))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    def is_ready() -> bool:
        return state["ready"] and not draining.is_set()

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": is_ready()}, 200 if is_ready() else 503)

    async def model_ready(request: Request) -> Response:
        try:
            model_named(request)
        except RequestError as refused:
            return error(refused.status, str(refused), "v2_model_ready")
        return JSONResponse({"name": settings.name, "ready": is_ready()},
                            200 if is_ready() else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "emotion-serve", "version": VERSION,
                             "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        try:
            model_named(request)
            if not state["ready"]:
                raise RequestError(503, "model: loading")
        except RequestError as refused:
            return error(refused.status, str(refused), "v2_model")
        classifier = state["classifier"]
        return JSONResponse({
            "name": settings.name, "versions": [VERSION],
            "platform": PLATFORMS[classifier.runtime.split("-")[0]],
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32",
                         "shape": [-1, len(classifier.labels)]}],
            "parameters": {"labels": classifier.labels, "runtime": classifier.runtime,
                           "max_length": classifier.max_length}})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def home(request: Request) -> Response:
        return HTMLResponse(page.replace("{{MODEL}}", json.dumps(settings.name)))

    api = openapi.document(settings.name, VERSION, settings.max_texts, settings.max_text_bytes)

    async def openapi_document(request: Request) -> Response:
        return JSONResponse(api)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    async def http_error(request: Request, failure: HTTPException) -> Response:
        """Starlette's own refusals (no such route, a method not allowed) as JSON too."""
        what = {404: "no such route", 405: "method not allowed"}.get(
            failure.status_code, failure.detail)
        response = error(failure.status_code, f"{request.method} {request.url.path}: {what}",
                         "unrouted")
        response.headers.update(failure.headers or {})
        return response

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return Starlette(routes=[
        Route("/", home),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        *(route for prefix in (model, versioned) for route in (
            Route(prefix, model_metadata),
            Route(f"{prefix}/ready", model_ready),
            Route(f"{prefix}/infer", oip_infer, methods=["POST"]))),
        Route("/v1/models/{name}:predict", tf_predict, methods=["POST"]),
        Route("/metrics", prometheus),
        Route("/v2/openapi.json", openapi_document),
        Route("/v2/docs", docs),
        Mount("/v2/docs/static", StaticFiles(directory=swagger_ui_path)),
    ], lifespan=begin, exception_handlers={HTTPException: http_error})

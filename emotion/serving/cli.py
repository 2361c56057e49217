"""`emotion-serve`: serve an ONNX runtime folder over HTTP (see emotion.serving).

    emotion-serve                          # models/onnx as "emotion" on 127.0.0.1:8080
    emotion-serve --model DIR --host 0.0.0.0 --port 9000 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from emotion.errors import PipelineError, first_line
from emotion.paths import ONNX_DIR
from emotion.prediction.runtime_choice import choose_runtime
from emotion.prediction.runtime_settings import RUNTIMES, RuntimeSettings
from emotion.serving.app import Settings, create_app
from emotion.serving.connections import serve

SETTINGS_VARIABLE = "EMOTION_SERVE_SETTINGS"  # how --workers N hands the settings over


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Settings(model=ONNX_DIR)
    parser = argparse.ArgumentParser(
        prog="emotion-serve", description="Serve the emotion classifier over HTTP: the Open "
        "Inference Protocol (KServe V2), TF Serving's REST predict, Prometheus metrics at "
        "/metrics and a page at /.")
    parser.add_argument("--model", type=Path, default=defaults.model,
                        help="the ONNX runtime folder; default: models/onnx")
    parser.add_argument("--name", default=defaults.name,
                        help="the model's name in the URLs; default: emotion")
    parser.add_argument("--runtime", choices=list(RUNTIMES),
                        help="the engine and precision; default: as emotion-predict chooses "
                        "(stated on start-up and in the model's metadata)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own model and batches")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="onnxruntime threads per process; 0: one per physical core")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch,
                        help="texts per model batch; default: %(default)s")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="how long a text may wait for its batch to fill; "
                        "default: %(default)s")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="texts waiting at most; beyond, 503 at once; default: %(default)s")
    parser.add_argument("--max-texts", type=int, default=defaults.max_texts,
                        help="texts a request; beyond, 413; default: %(default)s")
    parser.add_argument("--max-text-bytes", type=int, default=defaults.max_text_bytes,
                        help="UTF-8 bytes a text; beyond, 413; default: %(default)s")
    parser.add_argument("--header-timeout", type=float, default=defaults.header_timeout,
                        help="seconds for a request's line and headers to arrive, from the "
                        "connection or the previous response on; then the connection is "
                        "closed; default: %(default)s")
    parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                        help="seconds for a request's body to arrive; then 408; default: "
                        "%(default)s")
    parser.add_argument("--keep-alive-timeout", type=float,
                        default=defaults.keep_alive_timeout,
                        help="seconds an idle connection stays open between requests; "
                        "default: %(default)s")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="open connections a process at most; one more is closed at "
                        "once; default: %(default)s")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help="request body bytes being read at once, all requests together; "
                        "beyond, 503; default: %(default)s")
    args = parser.parse_args(argv)
    for name in ("workers", "max_batch", "max_queue", "max_texts", "max_text_bytes",
                 "max_connections", "max_body_bytes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads < 0 or args.max_wait_ms < 0:
        parser.error("--threads and --max-wait-ms cannot be negative")
    for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    return args


def app_from_environment():
    """The app of one of several worker processes (uvicorn's factory)."""
    fields = json.loads(os.environ[SETTINGS_VARIABLE])
    return create_app(Settings(**{**fields, "model": Path(fields["model"])}))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings(**{field.name: getattr(args, field.name)
                           for field in dataclasses.fields(Settings)})
    try:
        # A wrong folder or a runtime that cannot run here fails now, before serving.
        choose_runtime(RuntimeSettings.read(settings.model), settings.runtime)
    except PipelineError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
    options = {"host": args.host, "port": args.port, "timeout_graceful_shutdown": 30,
               "timeout_keep_alive": settings.keep_alive_timeout,
               "header_timeout": settings.header_timeout,
               "max_connections": settings.max_connections}
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found: this one, so a finished shutdown exits 0 (by default: killed, -15).
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda number, frame: sys.exit(0))
    if args.workers == 1:
        serve(create_app(settings), **options)
    else:
        os.environ[SETTINGS_VARIABLE] = json.dumps(
            {**dataclasses.asdict(settings), "model": str(settings.model)})
        serve("emotion.serving.cli:app_from_environment", factory=True,
              workers=args.workers, **options)


if __name__ == "__main__":
    main()

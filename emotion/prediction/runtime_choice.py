"""Which runtime runs an ONNX runtime folder on this machine: one forced by the caller
(`--runtime`, `runtime=`), which must be able to run here; else the first of the folder's
`preferred` runtimes (those the onnx stage measured as accurate as the default) that can run
here; else the folder's default. Each choice comes with the reason, for emotion-predict
--verbose, the server's start-up line and its metadata."""

from __future__ import annotations

import importlib.util

from emotion.errors import UsageError
from emotion.hardware import has_bfloat16_units
from emotion.prediction.runtime_settings import RUNTIMES, RuntimeSettings


def cannot_run(runtime: str) -> str | None:
    """Why `runtime` cannot run on this machine, or None where it can."""
    spec = RUNTIMES[runtime]
    if spec.engine == "openvino" and importlib.util.find_spec("openvino") is None:
        return "OpenVINO is not installed (pip install '.[openvino]')"
    if spec.precision == "bf16" and not has_bfloat16_units():
        return "this CPU has no bfloat16 units (AVX512_BF16 or AMX)"
    return None


def choose_runtime(settings: RuntimeSettings, forced: str | None = None) -> tuple[str, str]:
    """The runtime to run and why. A forced runtime that is unknown or cannot run here is a
    UsageError (exit code 2)."""
    if forced is not None:
        if forced not in RUNTIMES:
            raise UsageError(f"unknown runtime {forced!r} (use one of {', '.join(RUNTIMES)})")
        if reason := cannot_run(forced):
            raise UsageError(f"runtime {forced} cannot run here: {reason}")
        return forced, "asked for"
    passed_over = []
    for runtime in settings.preferred:
        if (reason := cannot_run(runtime)) is None:
            return runtime, ("the onnx stage measured it as accurate as "
                             f"{settings.default}, and it can run here")
        passed_over.append(f"{runtime} passed the onnx stage's rule but {reason}")
    if not passed_over:
        passed_over.append("no faster runtime passed the onnx stage's rule")
    return settings.default, f"the folder's default ({'; '.join(passed_over)})"

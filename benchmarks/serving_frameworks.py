"""emotion-serve against a serving framework (MLServer 1.7.1, with the custom runtime in
benchmarks/mlserver/emotion_runtime.py), on the same model folder and the same Open Inference
Protocol load (benchmarks.serve_load): each in its own virtualenv built here from the built wheel of
this project (`make setup-predict` builds it) plus the server's own packages. Prints, per
server: packages installed, install size, cold start (process start to ready, median of 3),
texts/s and latency at 32 clients, and a burst of 64 clients.

Usage (after `dvc repro publish` and `make setup-predict`):
    python -m benchmarks.serving_frameworks [--requests 2000] [--venvs .venv-bench]
"""

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.serve_load import free_port, load
from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.paths import ONNX_DIR, RAW_DIR

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {  # name: (the wheel's extras, other packages, constraint files)
    "emotion-serve (Starlette + uvicorn)": ("[predict,serve]", [],
                                            ["requirements-predict.txt",
                                             "requirements-serve.txt"]),
    # MLServer pins its own starlette/uvicorn/prometheus-client: not ours.
    "MLServer 1.7.1": ("[predict]", ["mlserver==1.7.1"], ["requirements-predict.txt"]),
}


def build(venv: Path, extras: str, packages: list[str], constraints: list[str]) -> None:
    """A virtualenv with the project's wheel (with `extras`) and `packages`."""
    if (venv / ".installed").exists():
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next((ROOT / ".venv-predict/wheel").glob("emotion_pipeline-*.whl"))
    pip = [str(venv / "bin/pip"), "install", "--quiet"]
    subprocess.run([*pip, "pip==26.3"], check=True)
    pins = [argument for name in constraints for argument in ("-c", str(ROOT / name))]
    subprocess.run([*pip, *pins, f"{wheel}{extras}", *packages], check=True)
    (venv / ".installed").touch()


def footprint(venv: Path) -> tuple[int, float]:
    """Packages installed (pip itself excluded) and site-packages' size in MB."""
    listed = json.loads(subprocess.run([str(venv / "bin/pip"), "list", "--format", "json"],
                                       capture_output=True, text=True, check=True).stdout)
    site = next(venv.glob("lib/python*/site-packages"))
    size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    return len([p for p in listed if p["name"] not in ("pip", "setuptools")]), size / 2**20


def command(name: str, venv: Path, port: int, scratch: Path) -> list[str]:
    if name.startswith("emotion-serve"):
        return [str(venv / "bin/emotion-serve"), "--model", str(ONNX_DIR), "--port", str(port)]
    folder = scratch / "mlserver"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "benchmarks/mlserver/emotion_runtime.py", folder)
    # parallel_workers 0: inference in the server process. MLServer 1.7.1's worker pool
    # crashes at start here ("There is no current event loop in thread 'MainThread'" in
    # each worker), so no model loads with its default of 1.
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "emotion", "implementation": "emotion_runtime.EmotionRuntime",
        "parameters": {"uri": str(ONNX_DIR.resolve())},
        "max_batch_size": 64, "max_batch_time": 0.001}))
    return [str(venv / "bin/mlserver"), "start", str(folder)]


def start(argv: list[str], port: int) -> tuple[subprocess.Popen, float]:
    import http.client

    began = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=ROOT)
    while process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/models/emotion/ready")
            if connection.getresponse().status == 200:
                return process, time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{argv[0]} exited with {process.returncode}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--venvs", type=Path, default=ROOT / ".venv-bench")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}]")
    texts = list(read_split(RAW_DIR, "test")["text"])
    print(f"{'server':<36} {'packages':>8} {'MB':>6} {'ready s':>8} {'texts/s':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7}  burst of 64 clients: statuses, p99 ms")
    for index, (name, (extras, packages, constraints)) in enumerate(SERVERS.items()):
        venv = args.venvs / f"server-{index}"
        build(venv, extras, packages, constraints)
        count, size = footprint(venv)
        with tempfile.TemporaryDirectory() as scratch:
            readies = []
            for _ in range(3):
                port = free_port()
                process, ready = start(command(name, venv, port, Path(scratch)), port)
                readies.append(ready)
                stop(process)
            port = free_port()
            process, _ = start(command(name, venv, port, Path(scratch)), port)
            try:
                load(port, texts, 32, 100)  # warm-up
                seconds, latencies, statuses = load(port, texts, 32, args.requests)
                _, burst, burst_statuses = load(port, texts, 64, args.requests)
            finally:
                stop(process)
        print(f"{name:<36} {count:8d} {size:6.0f} {statistics.median(readies):8.2f} "
              f"{statuses[200] / seconds:8.1f} {np.percentile(latencies, 50):7.1f} "
              f"{np.percentile(latencies, 99):7.1f}  {dict(sorted(burst_statuses.items()))}, "
              f"{np.percentile(burst, 99) if burst else float('nan'):.1f}", flush=True)


if __name__ == "__main__":
    main()

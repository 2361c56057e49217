"""Load on `emotion-serve`: the real server process (models/onnx, its default graph) and
clients sending one test-split text per OIP infer request over keep-alive connections, at
several concurrencies; then a burst beyond the queue. Prints, per scenario: texts/s, latency
p50/p95/p99, statuses, and the server's mean model batch (from its /metrics).

The clients run on the same machine as the server (they share its cores; on 2 vCPUs they
take a share of them), so the figures are a lower bound of what the server does with
remote clients. Figures, not assertions; the CPU is printed first.

Usage (after `dvc repro publish`): python -m benchmarks.serve_load [--requests 2000]
"""

import argparse
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.paths import ONNX_DIR, RAW_DIR

COMMAND = shutil.which("emotion-serve", path=str(Path(sys.executable).parent))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(*options: str) -> tuple[subprocess.Popen, int, float]:
    """The server, its port, and the seconds from process start to ready."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen([COMMAND, "--model", str(ONNX_DIR), "--port", str(port),
                                *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return process, port, time.perf_counter() - began
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"emotion-serve exited with {process.returncode}")
        time.sleep(0.01)


def load(port: int, texts: list[str], clients: int, requests: int
         ) -> tuple[float, list[float], Counter]:
    """Seconds for `requests` one-text requests from `clients` threads, their latencies
    (ms, answered ones) and statuses."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            text = texts[index % len(texts)]
            body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                           "data": [text]}]})
            began = time.perf_counter()
            connection.request("POST", "/v2/models/emotion/infer", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            with lock:
                statuses[response.status] += 1
                if response.status == 200:
                    latencies.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, latencies, statuses


def mean_batch(port: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    values = {line.split()[0]: float(line.split()[1])
              for line in connection.getresponse().read().decode().splitlines()
              if line.startswith("emotion_batch_texts_")}
    return values["emotion_batch_texts_sum"] / max(values["emotion_batch_texts_count"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}]")
    texts = list(read_split(RAW_DIR, "test")["text"])
    scenarios = [  # (name, server options, clients)
        ("default (--max-wait-ms 0), 1 client", (), 1),
        ("default, 8 clients", (), 8),
        ("default, 32 clients", (), 32),
        ("--max-wait-ms 5, 1 client", ("--max-wait-ms", "5"), 1),
        ("--max-wait-ms 5, 32 clients", ("--max-wait-ms", "5"), 32),
        ("no batching (--max-batch 1), 32 clients", ("--max-batch", "1"), 32),
        ("burst: 64 clients, --max-queue 16", ("--max-queue", "16"), 64),
    ]
    print(f"{'scenario':<42} {'ready s':>7} {'texts/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'batch':>6}  statuses")
    for name, options, clients in scenarios:
        process, port, ready = start(*options)
        try:
            load(port, texts, clients, 100)  # warm-up
            seconds, latencies, statuses = load(port, texts, clients, args.requests)
            p50, p95, p99 = (np.percentile(latencies, q) for q in (50, 95, 99))
            print(f"{name:<42} {ready:7.2f} {statuses[200] / seconds:8.1f} {p50:7.1f} "
                  f"{p95:7.1f} {p99:7.1f} {mean_batch(port):6.1f}  "
                  f"{dict(sorted(statuses.items()))}", flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


if __name__ == "__main__":
    main()

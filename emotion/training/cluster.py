"""The hosts of a multi_worker run: TF_CONFIG, and a deadline for all of them to join.

TensorFlow waits for a missing host forever, inside a C++ call that holds Python's GIL, so no
thread of the waiting process can end the wait. The deadline is kept by a small watchdog
process instead (`python -m emotion.training.cluster SECONDS`, started by start_deadline):
unless the training process reports in time, it prints a one-line error naming the hosts that do not
answer and kills it. This module does not import TensorFlow (the watchdog starts fast).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys

from emotion.errors import PipelineError, first_line

TIMEOUT_VARIABLE = "EMOTION_WORKER_TIMEOUT"
DEFAULT_TIMEOUT = 300.0


def cluster_spec() -> tuple[dict[str, list[str]], str, int]:
    """TF_CONFIG's cluster ({task type: addresses}), and this host's task type and index."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise PipelineError("param train.distribution: multi_worker needs TF_CONFIG in the "
                            "environment (the cluster's hosts and this host's task; see README)")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], int(task["index"])
        if not all(isinstance(hosts, list) for hosts in cluster.values()):
            raise ValueError("every task type of the cluster needs a list of host:port")
        if not 0 <= index < len(cluster.get(task_type, [])):
            raise ValueError(f"task {task_type} {index} is not in the cluster")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(f"environment variable TF_CONFIG: {first_line(error)} (expected "
                            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                            '"worker", "index": N}})') from None
    return cluster, task_type, index


def worker_timeout() -> float:
    """EMOTION_WORKER_TIMEOUT in seconds (DEFAULT_TIMEOUT when unset)."""
    value = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise PipelineError(f"environment variable {TIMEOUT_VARIABLE} must be a positive "
                            f"number of seconds, got {value!r}")
    return seconds


def start_deadline(seconds: float) -> subprocess.Popen:
    """Start the watchdog of this process; `stop_deadline` it once every host has joined."""
    return subprocess.Popen([sys.executable, "-m", "emotion.training.cluster", str(seconds)],
                            stdin=subprocess.PIPE)


def stop_deadline(watchdog: subprocess.Popen) -> None:
    watchdog.stdin.close()  # the watchdog reads end-of-file and exits
    watchdog.wait()


def silent_hosts() -> list[str]:
    """The other hosts of TF_CONFIG that accept no connection, e.g. "worker 1 (10.0.0.2:2222)"."""
    cluster, task_type, index = cluster_spec()
    return [f"{kind} {i} ({address})" for kind, addresses in cluster.items()
            for i, address in enumerate(addresses)
            if (kind, i) != (task_type, index) and not _listening(address)]


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


def _watch(seconds: float) -> None:
    """The watchdog: terminate the parent unless its pipe (stdin) closes within `seconds`."""
    parent = os.getppid()
    reported, _, _ = select.select([sys.stdin], [], [], seconds)
    if reported:  # closed: the hosts joined, or the parent ended
        return
    silent = silent_hosts()
    waiting = f"no answer from {', '.join(silent)}" if silent else "not every host joined"
    print(f"error: train.distribution multi_worker: the cluster in TF_CONFIG did not come up "
          f"within {seconds:g} s ({waiting}); start the train stage on every host, or raise "
          f"{TIMEOUT_VARIABLE}", file=sys.stderr, flush=True)
    # SIGKILL: TensorFlow's coordination service catches SIGTERM (as a preemption notice).
    os.kill(parent, signal.SIGKILL)


if __name__ == "__main__":
    _watch(float(sys.argv[1]))

"""Training on several devices and hosts (train.distribution), tested on CPU.

`mirrored` runs over 2 logical CPU devices (EMOTION_CPU_DEVICES=2) and `multi_worker` over 2
worker processes on 127.0.0.1 (free ports, a TF_CONFIG each): the chief through `dvc repro`,
the other worker started beside it in its own copy of the workspace, as on a second host.

Against `none` at the same global batch and seed, both must give the same per-epoch losses and
final weights within TOLERANCE. Only the order of float32 sums differs across replicas: after
the 36 steps of these runs the weights differ by about 1e-7 (float32's epsilon is 1.2e-7).
TOLERANCE is 100 times that, and 100 times smaller than one Adam step of the tiny runs (the
learning rate, 1e-3), so a wrong split of a batch or of its loss, which changes a step by the
order of a whole update, cannot pass. The tiny BERT for these comparisons has no dropout:
dropout draws different random numbers on each replica by design.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import (
    BUCKETED,
    command_env,
    copy_workspace,
    digest,
    dvc,
    live_steps,
    outputs_digest,
    processes_under,
    run_stage,
    run_stage_in_process,
    set_param,
    stage_ok,
    trainers,
    workspace_state,
)
from seaweedfs import free_ports

from emotion.process import STARTUP_NOISE

EPOCHS = 3
TOLERANCE = 1e-5
TIMEOUT = 30  # EMOTION_WORKER_TIMEOUT of these runs, seconds
KILL_EPOCHS = 4  # the worker dies after epoch 1, the chief after epoch 2: two left to resume


def cluster_env(ports: list[int], index: int, timeout: float = TIMEOUT) -> dict[str, str]:
    """The environment of worker `index` of a cluster of 127.0.0.1:port workers."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}}),
            "EMOTION_WORKER_TIMEOUT": str(timeout)}


def start_worker(folder: Path, ports: list[int], index: int = 1, **env: str
                 ) -> subprocess.Popen:
    """`python -m stages.train` of a non-chief worker in folder (plus env), its output in
    folder/../."""
    log = folder.parent / f"{folder.name}-{index}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=folder,
                                   env=command_env({**cluster_env(ports, index), **env}),
                                   stdout=out, stderr=subprocess.STDOUT)
    process.log = log
    return process


def finish(process: subprocess.Popen) -> tuple[int, str]:
    """Wait for a worker (at most TIMEOUT + a minute); its exit code and output."""
    code = process.wait(timeout=TIMEOUT + 60)
    return code, process.log.read_text()


def start_chief(root: Path, ports: list[int]) -> subprocess.Popen:
    """`dvc repro` of the train stage alone, forced, as worker 0."""
    return subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-s", "-f", "train"],
                            cwd=root, env=command_env(cluster_env(ports, 0)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def last_checkpoint(root: Path) -> dict[str, np.ndarray]:
    """The float variables of the last epoch's resume checkpoint (model and optimizer)."""
    last = root / f"models/.checkpoints/epoch-{epochs_done(root)}/ckpt"
    reader = tf.train.load_checkpoint(str(last))
    return {name: reader.get_tensor(name)
            for name, dtype in reader.get_variable_to_dtype_map().items() if dtype.is_floating}


def epochs_done(root: Path) -> int:
    state = root / "models/.checkpoints/state.json"
    try:
        return len(json.loads(state.read_text())["history"])
    except (OSError, ValueError):  # not there yet, or being replaced
        return 0


def wait_for_epoch(root: Path, epoch: int, *processes: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while epochs_done(root) < epoch:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), (
            f"training ended or stalled before epoch {epoch}")
        time.sleep(0.02)


def error_line(output: str) -> str:
    """The stage's `error: ...` line in a process's output (DVC adds its own lines after)."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def runs(dvc_repo, assets, tmp_path_factory) -> dict:
    """The tiny BERT without dropout trained three ways, in one repo: none (the stage, in
    this process), then by `dvc repro` mirrored over 2 logical CPUs, and multi_worker with a
    second worker beside it. Returns, for each, its log, the history, the last checkpoint and
    metrics/train.json; and the second worker's exit code, log and workspace before and
    after."""
    folder = tmp_path_factory.mktemp("distribute")
    root = copy_workspace(dvc_repo[0], folder / "chief", with_repo=True)
    set_param(root, "model", "checkpoint", str(assets["model_without_dropout"]))
    set_param(root, "train", "epochs", EPOCHS)
    # Several lengths: the last batch of each is partial, split unevenly across replicas.
    set_param(root, "train", "bucket_lengths", BUCKETED)
    results = {}
    for distribution in ("none", "mirrored", "multi_worker"):
        set_param(root, "train", "distribution", distribution)
        if distribution == "multi_worker":
            worker = copy_workspace(root, folder / "worker")  # as a second host would hold
            results["worker_before"] = workspace_state(worker)
            ports = free_ports(2)
            process = start_worker(worker, ports)
            log = dvc(root, "repro", "train", env=cluster_env(ports, 0))
            results["worker_code"], results["worker_log"] = finish(process)
            results["worker_after"] = workspace_state(worker)
            results["ports"] = ports
        elif distribution == "mirrored":
            log = dvc(root, "repro", "train", env={"EMOTION_CPU_DEVICES": "2"})
        else:  # the reference: the stage in this process (its devices are set up already)
            log = stage_ok("train", root)
        results[distribution] = {
            "log": log, "history": pd.read_csv(root / "plots/train/history.csv"),
            "weights": last_checkpoint(root),
            "metrics": json.loads((root / "metrics/train.json").read_text()),
            "live": live_steps(root, "loss")}
    results["status"] = dvc(root, "status", "train")
    return results


@pytest.mark.parametrize("distribution", ["mirrored", "multi_worker"])
def test_two_replicas_train_as_one_device_does(runs, distribution):
    one, two = runs["none"], runs[distribution]
    assert "2 replicas" in two["log"] and "replicas" not in one["log"]
    assert two["metrics"]["distribution"] == distribution and two["metrics"]["replicas"] == 2
    assert not {"distribution", "xla"} & one["metrics"].keys()  # none writes what it wrote
    assert len(two["history"]) == EPOCHS
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(two["history"][column], one["history"][column],
                                   rtol=0, atol=TOLERANCE, err_msg=column)
    assert one["weights"].keys() == two["weights"].keys() and len(one["weights"]) > 40
    for name, weights in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], weights, rtol=0, atol=TOLERANCE,
                                   err_msg=name)
    assert "Data and pipelines are up to date" in runs["status"]


def test_only_the_chief_writes(runs):
    assert runs["worker_code"] == 0, runs["worker_log"][-3000:]
    assert "this is worker 1 (writes nothing)" in runs["worker_log"]
    assert "this is worker 0 (the chief, writes the outputs)" in runs["multi_worker"]["log"]
    assert runs["worker_after"] == runs["worker_before"]  # not even resume checkpoints
    # ...nor live metrics: the chief's series has each epoch once.
    assert runs["multi_worker"]["live"] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_killed_workers_end_with_one_line_and_the_run_resumes(dvc_repo, tmp_path):
    """With dropout: a worker killed mid-run ends the chief's `dvc repro` with one line; the
    chief killed mid-run ends the other worker with one line; the next run resumes on both
    from the chief's last epoch and ends with the bytes of an uninterrupted run.

    The uninterrupted run's processes start with TF_ENABLE_ONEDNN_OPTS=0, what TensorFlow
    does by default on AMD EPYC CPUs, and the interrupted ones through `dvc repro` as users
    run them: every process must set the pipeline's own settings itself (emotion.process),
    or the two runs compute with other kernels and differ in bytes (they did on AVX2-only
    EPYCs when the setting lived in dvc.yaml's command)."""
    root = copy_workspace(dvc_repo[0], tmp_path / "chief", with_repo=True)
    set_param(root, "train", "distribution", "multi_worker")
    set_param(root, "train", "epochs", KILL_EPOCHS)
    worker = copy_workspace(root, tmp_path / "worker")
    outputs = ("models/trained/tf_model.h5", "plots/train/history.csv")

    ports = free_ports(2)  # the uninterrupted run: the chief as the train stage's process
    process = start_worker(worker, ports, TF_ENABLE_ONEDNN_OPTS="0")
    chief = run_stage("train", root, **cluster_env(ports, 0), TF_ENABLE_ONEDNN_OPTS="0")
    worker_code, worker_log = finish(process)  # waited for even when the chief failed
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker_code == 0, worker_log[-3000:]
    uninterrupted = {name: (root / name).read_bytes() for name in outputs}

    # A worker dies: the chief's dvc repro fails with one line, naming it.
    (root / "models/.checkpoints/state.json").unlink()  # train afresh
    ports = free_ports(2)
    process, chief = start_worker(worker, ports), start_chief(root, ports)
    wait_for_epoch(root, 1, process, chief)
    process.kill()
    finish(process)
    chief_log = chief.communicate(timeout=TIMEOUT + 60)[0]
    assert chief.returncode != 0
    assert error_line(chief_log).startswith(
        f"error: train.distribution multi_worker: lost contact with worker 1 "
        f"(127.0.0.1:{ports[1]})"), chief_log[-3000:]

    # The chief dies: the other worker fails with one line, naming it.
    done = epochs_done(root)
    ports = free_ports(2)
    process, chief = start_worker(worker, ports), start_chief(root, ports)
    wait_for_epoch(root, done + 1, process, chief)
    (trainer,) = trainers(processes_under(root))
    os.kill(trainer, signal.SIGKILL)
    code, worker_log = finish(process)
    chief.communicate(timeout=60)
    assert code != 0
    assert error_line(worker_log).startswith(
        f"error: train.distribution multi_worker: lost contact with worker 0 "
        f"(127.0.0.1:{ports[0]})"), worker_log[-3000:]

    # Both start again: they resume from the chief's last epoch, to the same bytes.
    done = epochs_done(root)
    assert 2 <= done < KILL_EPOCHS
    ports = free_ports(2)
    process = start_worker(worker, ports)
    log = dvc(root, "repro", "-s", "-f", "train", env=cluster_env(ports, 0))
    code, worker_log = finish(process)
    assert code == 0
    for output in (log, worker_log):
        assert f"resuming after epoch {done} (the chief's checkpoint)" in output
        assert len(re.findall(r"^epoch \d+/\d+: ", output, re.M)) == KILL_EPOCHS - done
    for name, content in uninterrupted.items():
        assert (root / name).read_bytes() == content, name


@pytest.fixture(scope="module")
def workspace(dvc_repo, tmp_path_factory) -> Path:
    """A copy of the shared run's files and outputs, set to multi_worker (no git, no DVC)."""
    root = copy_workspace(dvc_repo[0], tmp_path_factory.mktemp("lone") / "project")
    set_param(root, "train", "distribution", "multi_worker")
    return root


def test_a_cluster_that_does_not_come_up_ends_with_one_line(workspace):
    before = outputs_digest(workspace)
    ports = free_ports(2)
    started = time.monotonic()
    result = run_stage("train", workspace, **cluster_env(ports, 0, timeout=5))
    seconds = time.monotonic() - started
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "error: train.distribution multi_worker: the cluster in TF_CONFIG did not come up "
        f"within 5 s (no answer from worker 1 (127.0.0.1:{ports[1]})); start the train stage "
        "on every host, or raise EMOTION_WORKER_TIMEOUT")
    assert seconds < 5 + 60  # the timeout, plus TensorFlow's start-up: no hang
    assert outputs_digest(workspace) == before


def test_a_port_in_use_ends_with_one_line(workspace):
    import socket

    ports = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        result = run_stage("train", workspace, **cluster_env(ports, 0))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: train.distribution multi_worker: cannot start this host's server at "
        f"127.0.0.1:{ports[0]} (TF_CONFIG task worker 0)"), result.stderr[-2000:]
    # The stage process's stderr: the error, none of TensorFlow's start-up notices.
    assert not [line for line in result.stderr.splitlines() if STARTUP_NOISE.search(line)]


CLUSTER = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
           "task": {"type": "worker", "index": 0}}


@pytest.mark.parametrize(("distribution", "environment", "named"), [
    ("multi_worker", {}, "multi_worker needs TF_CONFIG"),
    ("multi_worker", {"TF_CONFIG": "{cluster"}, "environment variable TF_CONFIG"),
    ("multi_worker", {"TF_CONFIG": json.dumps({**CLUSTER, "task": {"type": "worker",
                                                                   "index": 2}})},
     "task worker 2 is not in the cluster"),
    ("multi_worker", {"TF_CONFIG": json.dumps(CLUSTER), "EMOTION_WORKER_TIMEOUT": "soon"},
     "EMOTION_WORKER_TIMEOUT must be a positive number"),
    ("mirrored", {"EMOTION_CPU_DEVICES": "two"}, "EMOTION_CPU_DEVICES must be a positive"),
], ids=["no TF_CONFIG", "TF_CONFIG not JSON", "task not in the cluster", "bad timeout",
        "bad device count"])
def test_bad_cluster_settings_are_one_line(workspace, monkeypatch, distribution, environment,
                                           named):
    set_param(workspace, "train", "distribution", distribution)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    before = digest(workspace)
    result = run_stage_in_process("train", workspace)
    after = digest(workspace)
    set_param(workspace, "train", "distribution", "multi_worker")
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and named in message, result.stderr[-2000:]
    assert after == before

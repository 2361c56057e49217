"""Training killed part-way resumes from its last completed epoch and ends bit-identical;
any change to what the weights depend on trains afresh.

Kills, and the runs of changed code, use the train stage's own process (`python -m
stages.train`, as DVC runs it); the other runs are the stage in this process
(conftest.run_in_process), which saves a model with the bytes a process would."""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
from conftest import (
    BUCKETED,
    copy_workspace,
    live_steps,
    stage_ok,
    tiny_params,
    write_params,
)

from emotion.training.checkpoints import KILL_POINTS, KILL_VARIABLE, best_epoch
from emotion.training.live import LOGGED

EPOCHS = 3


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, dvc_repo) -> Path:
    """The shared run's workspace without its training state: data stages done, once."""
    folder = copy_workspace(dvc_repo[0], tmp_path_factory.mktemp("tokenized") / "project")
    shutil.rmtree(folder / "models")
    return folder


@pytest.fixture
def project(tokenized, tmp_path, monkeypatch) -> Path:
    """A copy of `tokenized` for one test (overrides conftest's empty project)."""
    folder = copy_workspace(tokenized, tmp_path / "project")
    monkeypatch.chdir(folder)
    return folder


def run_ok(name: str, cwd, in_process: bool = False) -> str:
    return stage_ok(name, cwd, in_process)


def killed_at(project: Path, point: str) -> subprocess.CompletedProcess:
    """The train stage's process, SIGKILLed by the fault hook at `point` of epoch 2's
    checkpoint save (checkpoints.KILL_POINTS): no handler, no atexit, nothing else runs."""
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=project,
                            capture_output=True, text=True,
                            env={**os.environ, KILL_VARIABLE: f"{point}@2"})
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


# Everything a resume must carry at once: epochs of several batch shapes, the mean-pooling
# head, a linear schedule's position (warm-up, then decay), mixed bfloat16.
KILLED_PARAMS = {"epochs": EPOCHS, "bucket_lengths": BUCKETED, "pooling": "mean",
                 "lr_schedule": "linear", "warmup_ratio": 0.2, "precision": "mixed_bfloat16"}


@pytest.fixture(scope="module")
def killed(tokenized, assets, tmp_path_factory) -> Path:
    """`tokenized` with KILLED_PARAMS, its train stage process SIGKILLed in the first window of
    epoch 2's checkpoint save (its folder staged, not yet in place), once."""
    folder = copy_workspace(tokenized, tmp_path_factory.mktemp("killed") / "project")
    params = tiny_params(assets)
    params["train"].update(KILLED_PARAMS)
    write_params(folder, params)
    assert epochs_run(killed_at(folder, KILL_POINTS[0]).stdout) == 2
    assert not (folder / "models/trained").exists()
    return folder


def epochs_run(log: str) -> int:
    return len([line for line in log.splitlines() if line.startswith("epoch ") and ": " in line])


def trained_afresh(log: str, epochs: int) -> bool:
    """Whether the log shows epochs 1..epochs trained (from the start, not resumed)."""
    trained = [line.split(":")[0] for line in log.splitlines()
               if line.startswith("epoch ") and ": " in line]
    return "resuming" not in log and trained == [
        f"epoch {epoch}/{epochs}" for epoch in range(1, epochs + 1)]


def saved_state(project: Path) -> tuple[int, list[str]]:
    """The epochs state.json says are done, and what models/.checkpoints/ holds."""
    folder = project / "models/.checkpoints"
    history = json.loads((folder / "state.json").read_text())["history"]
    return len(history), sorted(path.name.split(".staging-")[0] for path in folder.iterdir())


@pytest.mark.slow
def test_killed_training_resumes_to_identical_weights(killed, tmp_path):
    """Killed in each window of epoch 2's checkpoint save (checkpoints.KILL_POINTS: the
    `killed` run in the first, then a run in each of the others, SIGKILLed by the fault
    hook): every run resumes from the last complete save, and the last one ends with the
    bytes of an uninterrupted run."""
    reference = copy_workspace(killed, tmp_path / "reference")
    shutil.rmtree(reference / "models")
    run_ok("train", reference, in_process=True)  # uninterrupted
    project = copy_workspace(killed, tmp_path / "project")

    left = {KILL_POINTS[0]: saved_state(project)}
    for point in KILL_POINTS[1:]:
        result = killed_at(project, point)
        assert "resuming after epoch 1 " in result.stdout and epochs_run(result.stdout) == 1
        left[point] = saved_state(project)
    assert left == {  # the old state until state.json is replaced, whatever else is there
        "epoch-staged": (1, [".epoch-2", "epoch-1", "state.json"]),
        "epoch-written": (1, ["epoch-1", "epoch-2", "state.json"]),
        "state-written": (2, ["epoch-1", "epoch-2", "state.json"])}
    log = run_ok("train", project, in_process=True)

    assert "resuming after epoch 2 " in log and epochs_run(log) == EPOCHS - 2
    for name in ("models/trained/tf_model.h5", "plots/train/history.csv"):
        assert (project / name).read_bytes() == (reference / name).read_bytes(), name
    assert len(pd.read_csv(project / "plots/train/history.csv")) == EPOCHS
    history = json.loads((project / "models/.checkpoints/state.json").read_text())["history"]
    kept = {f"epoch-{EPOCHS}", f"epoch-{best_epoch(history)}", "state.json"}  # last and best
    assert saved_state(project) == (EPOCHS, sorted(kept))
    # The live metrics continue the checkpoint's series, each epoch once, though the kill
    # after state.json's replacement left DVCLive's an epoch behind (step 1 of 2 saved).
    for name in LOGGED:
        assert live_steps(project, name) == list(range(1, EPOCHS + 1)), name
    live = json.loads((project / "dvclive/metrics.json").read_text())
    assert live["step"] == EPOCHS and live["val_loss"] == history[-1]["val_loss"]


def train_one_epoch(project, assets, in_process: bool = False, **options) -> dict:
    """One training epoch; return the params used."""
    params = tiny_params(assets)
    params["train"].update(epochs=1, **options)
    write_params(project, params)
    run_ok("train", project, in_process)
    return params


@pytest.fixture(scope="module")
def one_epoch(tokenized, assets, tmp_path_factory) -> tuple[Path, dict]:
    """`tokenized` after a finished 1-epoch run of the tiny params (in this process), once;
    and those params."""
    folder = copy_workspace(tokenized, tmp_path_factory.mktemp("one-epoch") / "project")
    return folder, train_one_epoch(folder, assets, in_process=True)


@pytest.fixture
def after_one_epoch(one_epoch, tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A copy of `one_epoch` for one test (its model, resume checkpoints and params), and
    its own copy of those params."""
    source, params = one_epoch
    folder = copy_workspace(source, tmp_path / "project")
    monkeypatch.chdir(folder)
    return folder, copy.deepcopy(params)


def test_changed_params_do_not_resume_a_stale_checkpoint(after_one_epoch):
    project, params = after_one_epoch
    params["train"]["learning_rate"] = 2.0e-3
    write_params(project, params)
    assert trained_afresh(run_ok("train", project, in_process=True), epochs=1)


def test_more_epochs_continue_a_finished_run(after_one_epoch):
    project, params = after_one_epoch
    params["train"]["epochs"] = 2
    write_params(project, params)
    log = run_ok("train", project, in_process=True)
    assert "resuming after epoch 1" in log
    assert len(pd.read_csv(project / "plots/train/history.csv")) == 2


@pytest.mark.slow
def test_xla_compiled_training_continues_to_the_bytes_of_one_run(project, assets):
    """train.xla: 2 epochs in one run, and 1 epoch continued to 2 (the resume path: weights,
    Adam's state and the dropout RNG from the checkpoint), end with the same bytes. The
    tiny params' one bucket length (32) keeps XLA's compilations (one per batch shape) few."""
    outputs = ("models/trained/tf_model.h5", "plots/train/history.csv")
    params = tiny_params(assets)
    params["train"].update(epochs=2, xla=True)
    write_params(project, params)
    assert "resuming" not in run_ok("train", project, in_process=True)
    assert json.loads((project / "metrics/train.json").read_text())["xla"] is True
    uninterrupted = {name: (project / name).read_bytes() for name in outputs}
    shutil.rmtree(project / "models")
    for epochs in (1, 2):
        params["train"]["epochs"] = epochs
        write_params(project, params)
        log = run_ok("train", project, in_process=True)
    assert "resuming after epoch 1" in log
    with h5py.File(project / outputs[0]) as saved:
        weights = []
        saved.visititems(lambda name, item: weights.append(name)
                         if isinstance(item, h5py.Dataset) else None)
    assert len(weights) > 40
    for name, content in uninterrupted.items():
        assert (project / name).read_bytes() == content, name


def test_more_epochs_restart_a_linear_schedule(project, assets):
    """A linear schedule depends on the total number of steps, so it cannot be continued."""
    params = train_one_epoch(project, assets, in_process=True, lr_schedule="linear")
    params["train"]["epochs"] = 2
    write_params(project, params)
    assert trained_afresh(run_ok("train", project, in_process=True), epochs=2)


def double_the_loss(project) -> None:
    """A semantic change to the training code (the loss it optimises is doubled)."""
    training = project / "emotion/training/step.py"
    code = training.read_text()
    assert "loss = loss_fn(labels, logits, " in code
    training.write_text(code.replace("loss = loss_fn(labels, logits, ",
                                     "loss = 2.0 * loss_fn(labels, logits, "))


def test_changed_code_after_a_finished_run_trains_afresh(after_one_epoch):
    # Trained in this process: the project's code is still this repo's, and the fingerprint
    # reads the project's files either way. The changed code must run as its own process.
    project, params = after_one_epoch
    first = (project / "models/trained/tf_model.h5").read_bytes()
    double_the_loss(project)
    log = run_ok("train", project)
    assert trained_afresh(log, epochs=1)
    assert (project / "models/trained/tf_model.h5").read_bytes() != first
    assert params["train"]["epochs"] == 1


def test_changed_code_after_an_interrupted_run_trains_afresh(killed, tmp_path):
    project = copy_workspace(killed, tmp_path / "project")
    double_the_loss(project)
    assert trained_afresh(run_ok("train", project), epochs=EPOCHS)


def test_changed_pretrained_weights_train_afresh(project, assets):
    pretrained = project / "pretrained"
    shutil.copytree(assets["model"], pretrained)
    params = tiny_params(assets)
    params["model"]["checkpoint"] = str(pretrained)
    params["train"]["epochs"] = 1
    write_params(project, params)
    run_ok("train", project, in_process=True)
    params["train"]["epochs"] = 2
    write_params(project, params)
    (pretrained / "config.json").write_text(
        (pretrained / "config.json").read_text().replace('"hidden_dropout_prob": 0.1',
                                                         '"hidden_dropout_prob": 0.2'))
    assert trained_afresh(run_ok("train", project, in_process=True), epochs=2)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])  # as a power loss or a full disk leaves it


@pytest.mark.parametrize("damage", [
    "weights truncated", "checkpoint missing", "state.json undecodable",
    "a history row without val_loss"])
def test_a_damaged_checkpoint_is_one_line_and_trains_afresh(after_one_epoch, damage):
    """A checkpoint file that differs from its checksum in state.json, or is missing, or a
    state.json that cannot be read: one warning naming it, the folder kept aside, training
    from epoch 1 (the run asks for the 1 epoch saved, so a resume would train none)."""
    project, params = after_one_epoch
    folder = project / "models/.checkpoints"
    state = folder / "state.json"
    if damage == "weights truncated":
        truncate(folder / "epoch-1/weights.h5")
    elif damage == "checkpoint missing":
        next((folder / "epoch-1").glob("ckpt*.index")).unlink()
    elif damage == "state.json undecodable":
        state.write_bytes(b"\xff\xfe" + state.read_bytes())
    else:
        saved = json.loads(state.read_text())
        del saved["history"][0]["val_loss"]
        state.write_text(json.dumps(saved))
    named = {"weights truncated": "epoch-1/weights.h5 is damaged",
             "checkpoint missing": "epoch-1/ckpt", "state.json undecodable": "state.json is "
             "damaged", "a history row without val_loss": "state.json is damaged"}[damage]
    damaged = sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
    log = run_ok("train", project, in_process=True)
    (warning,) = [line for line in log.splitlines() if line.startswith("warning: ")]
    assert named in warning and "training afresh" in warning, warning
    assert trained_afresh(log, epochs=1)
    kept = project / "models/.checkpoints-damaged"
    assert sorted(str(path.relative_to(kept)) for path in kept.rglob("*")) == damaged
    assert saved_state(project)[0] == 1  # a new, complete checkpoint


def test_the_fingerprint_counts_replicas_and_hosts(after_one_epoch):
    """A run killed on 2 replicas and rerun on 3 (or on 2 hosts) splits its batches and
    dropout masks otherwise: it must not continue the checkpoint."""
    from emotion.training.checkpoints import run_fingerprint
    from emotion.training.settings import read_train_settings

    settings = read_train_settings()
    fingerprints = {run_fingerprint(settings, {"replicas": replicas, "hosts": hosts})
                    for replicas, hosts in ((1, 1), (2, 1), (3, 1), (2, 2))}
    assert len(fingerprints) == 4

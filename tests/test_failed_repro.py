"""A failed or killed `dvc repro` keeps the last results: every output byte for byte, and
`dvc status` names only what really changed (a param), never a deleted output.

Real `dvc repro` processes on a copy of the shared repo: a params typo, a stage killed after
it has begun writing its outputs, and a training run interrupted with Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    as_in_a_terminal,
    command_env,
    copy_workspace,
    dvc_status,
    outputs_digest,
    run_command,
    set_param,
    sh,
)

STAGING = ".*.staging-*"


@pytest.fixture(scope="module")
def failing_repo(dvc_repo, tmp_path_factory) -> Path:
    """A copy of the shared repo (git, DVC cache and all) for this module to break."""
    return copy_workspace(dvc_repo[0], tmp_path_factory.mktemp("failing") / "repo",
                          with_repo=True)


@pytest.fixture
def repo(failing_repo):
    """The copy, checked to be up to date; its params are put back after each test."""
    assert dvc_status(failing_repo) == {}
    yield failing_repo
    sh(failing_repo, "git", "checkout", "--", "params.yaml")


def start_repro(root: Path) -> subprocess.Popen:
    """`dvc repro` in its own process group, as in a terminal of its own."""
    return subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=root, env=command_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=as_in_a_terminal)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"dvc repro ended before {what}:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


# The stages that read each params section whole (package's model card lists the train params).
READERS = {"train": ("train", "package"), "export": ("export",)}


def only_params_changed(result: dict, section: str) -> None:
    """`dvc status` says exactly: the params section `section` changed for the stages that
    read it whole; no output is deleted or modified, no other stage is stale."""
    assert result == {stage: [{"changed deps": {"params.yaml": {section: "modified"}}}]
                      for stage in READERS[section]}


def test_a_params_typo_keeps_the_last_results(repo):
    before = outputs_digest(repo)
    set_param(repo, "train", "learning_rate", -1)

    result = run_command(repo, sys.executable, "-m", "dvc", "repro")

    assert result.returncode != 0
    assert "error: param train.learning_rate must be > 0, got -1" in result.stderr
    assert outputs_digest(repo) == before
    only_params_changed(dvc_status(repo), "train")
    sh(repo, "git", "checkout", "--", "params.yaml")  # the typo fixed: nothing to redo
    assert dvc_status(repo) == {}


def test_a_stage_killed_while_writing_keeps_the_last_results(repo):
    before = outputs_digest(repo)
    set_param(repo, "export", "batch_size", 4)
    repro = start_repro(repo)
    # The export stage has written its new SavedModel into its staging folder: kill it there.
    wait_for(lambda: any(repo.glob(f"models/{STAGING}/serving/saved_model.pb")), repro,
             "SavedModel written to staging")
    (stage,) = [child for child in psutil.Process(repro.pid).children(recursive=True)
                if "stages.export" in child.cmdline()]
    stage.kill()
    log = repro.communicate(timeout=120)[0]

    assert repro.returncode != 0, log
    assert "failed to reproduce 'export'" in log
    assert outputs_digest(repo) == before
    only_params_changed(dvc_status(repo), "export")
    # What the killed stage left is ignored by git and DVC (and removed by the next write).
    assert list(repo.glob(f"models/{STAGING}"))
    assert sh(repo, "git", "status", "--porcelain", "--", "models", "metrics") == ""
    sh(repo, "git", "checkout", "--", "params.yaml")
    assert dvc_status(repo) == {}


def test_training_interrupted_with_ctrl_c_keeps_the_last_results(repo):
    before = outputs_digest(repo)
    state = repo / "models/.checkpoints/state.json"
    old_state = state.read_text()
    set_param(repo, "train", "seed", 8)  # a new run, long enough to be interrupted
    set_param(repo, "train", "epochs", 60)  # ~0.2 s each after the first: time to interrupt
    repro = start_repro(repo)

    def first_epoch_done() -> bool:
        try:
            text = state.read_text()
            return text != old_state and len(json.loads(text)["history"]) >= 1
        except (OSError, ValueError):
            return False

    wait_for(first_epoch_done, repro, "the first epoch of the new run")
    os.killpg(repro.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    log = repro.communicate(timeout=120)[0]

    assert repro.returncode != 0, log
    assert "failed to reproduce 'train'" in log
    assert outputs_digest(repo) == before
    only_params_changed(dvc_status(repo), "train")
    sh(repo, "git", "checkout", "--", "params.yaml")
    assert dvc_status(repo) == {}

"""Experiments in parallel with DVC's queue (`dvc exp run --queue`, `dvc queue start -j 2`),
as docs/experiments.md runs seeds: the `queued_experiments` fixture runs them once."""

import json
import re

from conftest import THREAD_CAP, dvc, ran, sh, workspace_state

from emotion.training.live import LOGGED


def queue_states(status: str) -> dict[str, str]:
    """Experiment name -> state, from `dvc queue status`."""
    rows = re.findall(r"^\w+\s+(\S+)\s.*\s(\w+)$", status, flags=re.MULTILINE)
    return {name: state for name, state in rows if name not in ("Name", "status:")}


def test_two_experiments_train_at_once_each_in_its_own_workspace(queued_experiments):
    assert queued_experiments["most_at_once"] == 2
    trainers = queued_experiments["trainers"].values()
    root = queued_experiments["root"]
    # Each worker trains in its own temporary copy of the repo (never the workspace), so
    # resume scratch (models/.checkpoints) and staging folders cannot collide.
    folders = [info["cwd"] for info in trainers]
    assert len(set(folders)) == len(folders) >= 2
    assert all(folder.startswith(f"{root}/.dvc/tmp/exps/") for folder in folders)
    # The thread cap given to `dvc queue start` reaches every worker's training process.
    for info in trainers:
        assert {name: info["environ"].get(name) for name in THREAD_CAP} == THREAD_CAP


def test_a_running_queued_experiment_shows_its_finished_epochs_live(queued_experiments):
    """While the workers trained (held just after one of them logged epoch 1 of 2 live, in
    its temporary workspace), `dvc exp show` in the repo listed that experiment as running,
    with the epoch's live metrics (dvclive/metrics.json) read from its workspace."""
    shown = queued_experiments["live"]
    assert shown is not None, "no queued experiment logged its first epoch live"
    running = [exp for row in shown for exp in (row.get("experiments") or [])
               if (exp.get("executor") or {}).get("state") == "running"]
    live = [exp["revs"][0]["data"]["metrics"].get("dvclive/metrics.json", {}).get("data")
            for exp in running]
    assert {exp["name"] for exp in running} <= {"seed-1", "seed-2", "broken"}, running
    assert any(data and data["step"] == 1 and set(LOGGED) <= set(data) for data in live), live


def test_each_finished_experiment_shows_its_own_metrics(queued_experiments):
    root = queued_experiments["root"]
    states = queue_states(queued_experiments["status"])
    assert states == {"seed-1": "Success", "seed-2": "Success", "broken": "Failed"}

    shown = json.loads(dvc(root, "exp", "show", "--json"))
    experiments = {exp["revs"][0]["name"]: exp["revs"][0]
                   for row in shown for exp in (row.get("experiments") or [])}
    refs = sh(root, "git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    results = {}
    for name, seed in (("seed-1", 1), ("seed-2", 2)):
        # A train param alone reruns exactly train and what follows it, up to the target.
        assert ran(dvc(root, "queue", "logs", name)) == ["train", "evaluate"]
        data = experiments[name]["data"]
        assert data["params"]["params.yaml"]["data"]["train"]["seed"] == seed
        (ref,) = [ref for ref in refs if ref.endswith(f"/{name}")]
        committed = json.loads(sh(root, "git", "show", f"{ref}:metrics/evaluate.json"))
        assert data["metrics"]["metrics/evaluate.json"]["data"] == committed
        results[name] = committed
    assert results["seed-1"] != results["seed-2"]  # two runs, not one shown twice


def test_a_failed_experiment_has_its_log_and_leaves_the_workspace_alone(queued_experiments):
    root = queued_experiments["root"]
    log = dvc(root, "queue", "logs", "broken")
    assert re.search(r"error: param train\.precision must be one of .*'bogus'", log), log
    # Nothing of the experiments (nor of the failure) landed in the workspace: outputs,
    # resume scratch and staging folders are as before the queue ran.
    assert workspace_state(root, with_cache=False) == queued_experiments["workspace_before"]

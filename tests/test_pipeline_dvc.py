"""DVC drives the tiny pipeline in a temporary git repo: repro, status, exp, metrics, plots."""

import json
import re
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import LABELS, dvc, outputs_digest, run_in_process, set_param, sh

from emotion.hardware import has_bfloat16_units

STAGES = ["download", "eda", "tokenize", "train", "evaluate", "package", "export", "onnx"]


def ran(log: str) -> list[str]:
    """The stages a `dvc repro`/`dvc exp run` log says it ran."""
    return re.findall(r"Running stage '([\w-]+)'", log)


def stale(cwd: Path) -> set[str]:
    return set(json.loads(dvc(cwd, "status", "--json")))


def restore(root: Path) -> None:
    """Back to the committed baseline: git-tracked files, then DVC-cached outputs."""
    sh(root, "git", "checkout", "--", ".")
    dvc(root, "checkout", "-q")


def test_repro_runs_every_stage_and_writes_every_output(dvc_repo):
    root, first = dvc_repo
    order = ran(first)
    assert sorted(order) == sorted(STAGES)
    assert order.index("download") < order.index("tokenize") < order.index("train") < (
        order.index("evaluate")) < order.index("package") < min(order.index("export"),
                                                                 order.index("onnx"))
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    for stage in pipeline["stages"].values():
        for out in stage["outs"]:
            path = out if isinstance(out, str) else next(iter(out))
            assert (root / path).exists(), path
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)


def test_second_repro_does_nothing(dvc_repo):
    root, _ = dvc_repo
    assert stale(root) == set()
    assert ran(dvc(root, "repro")) == []


def test_a_train_param_change_reruns_train_and_its_dependents(faster_lr):
    # (the shared `faster_lr` branch: train.learning_rate changed, then `dvc repro`)
    assert faster_lr["stale"] == {"train", "package"}  # the model card lists the train params
    assert sorted(ran(faster_lr["log"])) == ["evaluate", "export", "onnx", "package", "train"]
    assert faster_lr["stale_after"] == set()


# model.max_length truncates the texts, and train records it in the model folder: the stages
# that read it, and (in the experiment below, which changes it with train params) all that
# follows tokenize reruns.
MAX_LENGTH_READERS = {"tokenize", "train", "package"}
AFTER_TOKENIZE = ["evaluate", "export", "onnx", "package", "tokenize", "train"]


@pytest.mark.parametrize(("section", "key", "value", "reading", "expected"), [
    ("eda", "length_bin_width", 2, {"eda"}, ["eda"]),
    ("model", "max_length", 8, MAX_LENGTH_READERS, None),  # repro: in the experiment's test
    ("evaluate", "batch_size", 4, {"evaluate"}, ["evaluate"]),
    ("export", "batch_size", 4, {"export"}, ["export"]),
    ("onnx", "batch_size", 4, {"onnx"}, ["onnx"]),
])
def test_a_param_change_reruns_exactly_its_dependents(dvc_repo, section, key, value, reading,
                                                      expected):
    root, _ = dvc_repo
    set_param(root, section, key, value)
    try:
        # `dvc status` names the stages that read the param; their dependents follow in repro.
        assert stale(root) == reading
        if expected is not None:
            assert sorted(ran(dvc(root, "repro"))) == sorted(expected)
            assert stale(root) == set()
    finally:
        restore(root)


@pytest.mark.slow
def test_experiment_is_listed_restored_and_usable(dvc_repo):
    """An experiment (3 epochs, lr 2e-3, in mixed bfloat16, texts cut at 8 tokens): listed by
    `dvc exp show`, its bfloat16-trained model saved in float32 and served with parity, and
    both runs' outputs restored byte for byte by `dvc checkout` and `dvc exp apply`."""
    root, _ = dvc_repo
    baseline = outputs_digest(root)
    # -S writes 2e-3 as `2e-03`, a string to plain PyYAML: the stages must read a number.
    log = dvc(root, "exp", "run", "-S", "train.epochs=3", "-S", "train.learning_rate=2e-3",
              "-S", "train.precision=mixed_bfloat16", "-S", "model.max_length=8",
              "-n", "three-epochs")
    # model.max_length: tokenize and all after it reran (train params alone rerun train and
    # what follows it: the faster_lr test), nothing before it.
    assert sorted(ran(log)) == AFTER_TOKENIZE
    # A CPU without bfloat16 units says so (and names the faster setting); one with them not.
    assert ("no bfloat16 units" in log) == (has_bfloat16_units() is False)
    model = root / "models/emotion"
    with h5py.File(model / "tf_model.h5") as weights:
        dtypes = set()
        weights.visititems(lambda name, item: dtypes.add(str(item.dtype))
                           if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {"float32"}
    assert json.loads((model / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert json.loads((root / "metrics/train.json").read_text())["precision"] == "mixed_bfloat16"
    parity = json.loads((root / "metrics/export.json").read_text())
    assert parity["token_parity"]["mismatches"] == 0
    assert parity["prediction_parity"]["label_mismatches"] == 0
    assert parity["prediction_parity"]["max_probability_difference"] < 1e-5
    onnx = json.loads((root / "metrics/onnx.json").read_text())["float32"]["test"]
    assert onnx["label_mismatches"] == 0 and onnx["max_probability_difference"] < 1e-5
    # emotion-predict's defaults: the experiment's ONNX folder, checked against its model.
    predicted = run_in_process("emotion.cli", root, ["i am so happy", "i am scared"])
    assert predicted.returncode == 0, predicted.stderr
    assert [json.loads(line)["label"] in LABELS for line in predicted.stdout.splitlines()] == [
        True, True]
    # The stages replaced their (persist) outputs with the experiment's, which DVC recorded.
    experiment = outputs_digest(root)
    assert experiment.keys() == baseline.keys()
    assert experiment["models/emotion/tf_model.h5"] != baseline["models/emotion/tf_model.h5"]
    assert stale(root) == set()
    table = json.loads(dvc(root, "exp", "show", "--json"))
    experiments = [exp for rev in table for exp in (rev.get("experiments") or [])]
    (run,) = [exp for exp in experiments if exp.get("name") == "three-epochs"]
    data = run["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == 3
    assert data["params"]["params.yaml"]["data"]["train"]["learning_rate"] == 2e-3
    assert data["params"]["params.yaml"]["data"]["model"]["max_length"] == 8
    test_metrics = data["metrics"]["metrics/evaluate.json"]["data"]["test"]
    assert 0 <= test_metrics["accuracy"] <= 1 and test_metrics["loss"] > 0
    shown = dvc(root, "exp", "show", "--no-pager", "--md")
    assert "three-epochs" in shown and "test.accuracy" in shown and "test.loss" in shown
    # Back on the baseline, nothing is stale (the resume checkpoints are not an output), and
    # `dvc checkout` / `dvc exp apply` give back each run's bytes from the cache.
    restore(root)
    assert outputs_digest(root) == baseline
    assert stale(root) == set()
    assert ran(dvc(root, "repro")) == []
    dvc(root, "exp", "apply", "three-epochs")
    assert outputs_digest(root) == experiment
    restore(root)
    assert outputs_digest(root) == baseline


def test_metrics_and_plots_diff_compare_revisions(dvc_repo, faster_lr, tmp_path):
    root, _ = dvc_repo
    base, branch = faster_lr["base"], faster_lr["branch"]
    diff = json.loads(dvc(root, "metrics", "diff", base, branch, "--all", "--json"))
    test_diff = {key: value for key, value in diff["metrics/evaluate.json"].items()
                 if key.startswith("test.")}
    assert {"test.accuracy", "test.loss"} <= set(test_diff)
    assert test_diff["test.loss"]["old"] != test_diff["test.loss"]["new"]
    assert "test.loss" in dvc(root, "metrics", "diff", base, branch, "--md")

    out = tmp_path / "plots"
    dvc(root, "plots", "diff", base, branch, "-o", str(out))
    page = (out / "index.html").read_text()
    for title in ("Learning curve (loss)", "Confusion matrix (test)",
                  "Label distribution (train)", "label_frequency.png"):
        assert title in page, title
    assert branch in page

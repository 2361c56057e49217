"""DVC drives the tiny pipeline in a temporary git repo: repro, status, exp, metrics, plots."""

import json

import h5py
import pytest
import yaml
from conftest import LABELS, dvc, outputs_digest, ran, restore, run_in_process, set_param, stale

from emotion.hardware import has_bfloat16_units
from emotion.training.live import LOGGED

STAGES = ["download", "eda", "tokenize", "train", "evaluate", "package", "export", "onnx",
          "behaviour", "publish"]


def test_repro_runs_every_stage_and_writes_every_output(dvc_repo):
    root, first = dvc_repo
    order = ran(first)
    assert sorted(order) == sorted(STAGES)
    assert order.index("download") < order.index("tokenize") < order.index("train") < (
        order.index("evaluate")) < order.index("package") < min(order.index("export"),
                                                                 order.index("onnx"))
    assert order.index("onnx") < order.index("behaviour") < order.index("publish")
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    outs = {name: [out if isinstance(out, str) else next(iter(out)) for out in stage["outs"]]
            for name, stage in pipeline["stages"].items()}
    for path in (path for paths in outs.values() for path in paths):
        assert (root / path).exists(), path
    # export and publish are last: no stage depends on their outputs, so a param of
    # theirs reruns that stage alone.
    last = [path for name in ("export", "publish") for path in outs[name]]
    assert not [dep for stage in pipeline["stages"].values() for dep in stage.get("deps", [])
                if any(dep == path or dep.startswith(f"{path}/") for path in last)]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)


def test_second_repro_does_nothing(dvc_repo):
    root, _ = dvc_repo
    assert stale(root) == set()
    assert ran(dvc(root, "repro")) == []


# Params whose reruns are shown elsewhere: model.max_length truncates the texts, and train
# records it in the model folder; with train params and the export and onnx batch sizes it is
# the shared experiment's, whose run reruns tokenize and all that follows. A train param
# alone: the queue's experiments (tests/test_queue.py) rerun exactly train and evaluate, their
# target. export and onnx are last: no stage depends on their outputs (checked below).
MAX_LENGTH_READERS = {"tokenize", "train", "package"}
AFTER_TOKENIZE = ["behaviour", "evaluate", "export", "onnx", "package", "publish", "tokenize",
                  "train"]


@pytest.mark.parametrize(("section", "key", "value", "reading", "expected"), [
    ("eda", "length_bin_width", 2, {"eda"}, ["eda"]),
    ("model", "max_length", 8, MAX_LENGTH_READERS, None),  # repro: the experiment
    ("train", "learning_rate", 3.0e-3, {"train", "package"}, None),  # the model card lists
    # the train params; repro: the queue's experiments
    ("evaluate", "batch_size", 4, {"evaluate"}, ["evaluate"]),  # same results: package stays
    ("export", "batch_size", 4, {"export"}, None),  # repro: the experiment
    ("onnx", "batch_size", 4, {"onnx"}, None),  # repro: the experiment
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
def test_a_running_experiment_shows_each_finished_epoch_live(experiment):
    """While the shared experiment trained (its train stage held just after epoch 1 of 3),
    `dvc exp show` in a second process showed that epoch's live metrics (DVCLive's
    dvclive/metrics.json, a top-level metrics file of dvc.yaml) in the workspace's row."""
    shown = experiment["live"]
    assert shown is not None, "the train stage never logged epoch 1 live"
    (workspace,) = [rev for rev in shown if rev.get("rev") == "workspace"]
    live = workspace["data"]["metrics"]["dvclive/metrics.json"]["data"]
    assert live["step"] == 1 and set(LOGGED) <= set(live), live
    assert 0 < live["learning_rate"] <= 3e-3 and live["loss"] > 0


@pytest.mark.slow
def test_experiment_is_listed_restored_and_usable(experiment, dvc_repo):
    """The shared experiment (3 epochs, lr 3e-3, in mixed bfloat16, texts cut at 8 tokens,
    export and onnx checks in batches of 4): tokenize and all after it reran, nothing is
    stale after it, it is listed by `dvc exp show`, its bfloat16-trained model is saved in
    float32 and served with parity, and both runs' outputs are restored byte for byte by
    `dvc checkout` and `dvc exp apply`."""
    root, _ = dvc_repo
    log, baseline = experiment["log"], experiment["baseline"]
    # model.max_length: tokenize and all after it reran, nothing before it.
    assert sorted(ran(log)) == AFTER_TOKENIZE
    # A CPU without bfloat16 units says so (and names the faster setting); one with them not.
    assert ("no bfloat16 units" in log) == (has_bfloat16_units() is False)
    # The stages replaced their (persist) outputs with the experiment's, which DVC recorded.
    assert experiment["stale_after"] == set()
    assert experiment["outputs"].keys() == baseline.keys()
    assert (experiment["outputs"]["models/emotion/tf_model.h5"]
            != baseline["models/emotion/tf_model.h5"])
    # The fixture went back to the baseline: `dvc exp apply` gives the run's bytes back.
    assert outputs_digest(root) == baseline
    dvc(root, "exp", "apply", experiment["name"])
    try:
        assert outputs_digest(root) == experiment["outputs"]
        model = root / "models/emotion"
        with h5py.File(model / "tf_model.h5") as weights:
            dtypes = set()
            weights.visititems(lambda name, item: dtypes.add(str(item.dtype))
                               if isinstance(item, h5py.Dataset) else None)
        assert dtypes == {"float32"}
        assert json.loads((model / "config.json").read_text())["precision"] == "mixed_bfloat16"
        train = json.loads((root / "metrics/train.json").read_text())
        assert train["precision"] == "mixed_bfloat16" and train["epochs"] == 3
        parity = json.loads((root / "metrics/export.json").read_text())
        assert parity["token_parity"]["mismatches"] == 0
        assert parity["prediction_parity"]["label_mismatches"] == 0
        assert parity["prediction_parity"]["max_probability_difference"] < 1e-5
        onnx = json.loads((root / "metrics/onnx.json").read_text())["onnxruntime-float32"][
                "test"]
        assert onnx["label_mismatches"] == 0 and onnx["max_probability_difference"] < 1e-5
        # emotion-predict's defaults: the experiment's ONNX folder, checked against its model.
        predicted = run_in_process("emotion.prediction.cli", root, ["i am so happy", "i am scared"])
        assert predicted.returncode == 0, predicted.stderr
        assert [json.loads(line)["label"] in LABELS
                for line in predicted.stdout.splitlines()] == [True, True]
        assert stale(root) == set()
        table = json.loads(dvc(root, "exp", "show", "--json"))
        experiments = [exp for rev in table for exp in (rev.get("experiments") or [])]
        (run,) = [exp for exp in experiments if exp.get("name") == experiment["name"]]
        data = run["revs"][0]["data"]
        assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == 3
        assert data["params"]["params.yaml"]["data"]["train"]["learning_rate"] == 3e-3
        assert data["params"]["params.yaml"]["data"]["model"]["max_length"] == 8
        # (export's and onnx's checks above ran at batch size 4)
        assert {data["params"]["params.yaml"]["data"][stage]["batch_size"]
                for stage in ("export", "onnx")} == {4}
        test_metrics = data["metrics"]["metrics/evaluate.json"]["data"]["test"]
        assert 0 <= test_metrics["accuracy"] <= 1 and test_metrics["loss"] > 0
        shown = dvc(root, "exp", "show", "--no-pager", "--md")
        assert experiment["name"] in shown and "test.accuracy" in shown and "test.loss" in shown
    finally:
        # Back on the baseline, nothing is stale (the resume checkpoints are not an output),
        # and `dvc checkout` gives back the baseline's bytes from the cache.
        restore(root)
    assert outputs_digest(root) == baseline
    assert stale(root) == set()
    assert ran(dvc(root, "repro")) == []


def test_metrics_and_plots_diff_compare_revisions(dvc_repo, experiment, tmp_path):
    root, _ = dvc_repo
    base, branch = experiment["base"], experiment["branch"]
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

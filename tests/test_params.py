"""Reading params.yaml and the cluster's environment: every value checked, each error one
PipelineError naming the param, the file and line, or the variable (no DVC, no stage run;
tests/test_bad_input.py runs the stages on bad params end to end)."""

import json

import pytest
import yaml
from conftest import ROOT

from emotion.errors import PipelineError
from emotion.params import load_params, one_of, param, positive
from emotion.training.cluster import cluster_spec, worker_timeout
from emotion.training.settings import read_train_settings


def test_load_params_reads_one_section_and_yaml_1_2_floats(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 3e-05\n  epochs: 2\n")
    # `dvc exp run -S train.learning_rate=3e-5` writes 3e-05: a string to plain YAML 1.1
    assert isinstance(yaml.safe_load(path.read_text())["train"]["learning_rate"], str)
    assert load_params("train", path) == {"learning_rate": 3e-05, "epochs": 2}


@pytest.mark.parametrize(("text", "message"), [
    (None, "params file {path} not found"),
    ("train:\n  seed: [1, 2\n", "{path} line 3: not valid YAML: "),
    ("model:\n  max_length: 8\n", "{path}: missing section 'train'"),
    ("train: 5\n", "{path}: missing section 'train'"),
], ids=["missing file", "not YAML", "no section", "section not a mapping"])
def test_load_params_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PipelineError) as error:
        load_params("train", path)
    assert str(error.value).startswith(message.format(path=path))


@pytest.mark.parametrize(("value", "kind", "message"), [
    (None, int, "param train.x is missing"),
    (True, int, "param train.x must be an integer, got True"),
    ("big", int, "param train.x must be an integer, got 'big'"),
    ("1e-3", float, "param train.x must be a number, got '1e-3'"),
], ids=["missing", "bool for int", "string for int", "string for float"])
def test_param_checks_the_type(value, kind, message):
    params = {} if value is None else {"x": value}
    with pytest.raises(PipelineError, match=f"^{message}$".replace("(", r"\(")):
        param(params, "train", "x", kind)


def test_param_helpers_accept_good_values_and_name_bad_ones():
    assert param({"x": 2}, "train", "x", float) == 2.0 and isinstance(
        param({"x": 2}, "train", "x", float), float)
    assert param({"x": False}, "train", "x", bool) is False
    assert positive({"x": 3}, "train", "x", int) == 3
    with pytest.raises(PipelineError, match=r"^param train.x must be > 0, got 0$"):
        positive({"x": 0}, "train", "x", int)
    assert one_of({"x": "cls"}, "train", "x", ["cls", "mean"]) == "cls"
    with pytest.raises(PipelineError,
                       match=r"^param train.x must be one of cls, mean, got 'max'$"):
        one_of({"x": "max"}, "train", "x", ["cls", "mean"])


@pytest.fixture
def train_params(tmp_path, monkeypatch):
    """The repo's params.yaml in a temporary cwd; edit(**train) rewrites its train section."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)

    def edit(**train) -> None:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(
            {**params, "train": {**params["train"], **train}}))
    edit()
    return edit


def test_the_repos_params_are_valid(train_params):
    settings = read_train_settings()
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert settings["checkpoint"] == committed["model"]["checkpoint"]
    assert settings["max_length"] == committed["model"]["max_length"]
    assert {key: settings[key] for key in committed["train"]} == committed["train"]


@pytest.mark.parametrize(("train", "message"), [
    ({"bucket_lengths": [16, 8]}, "param train.bucket_lengths must be increasing positive"),
    ({"bucket_lengths": [8, 8, 16]}, "param train.bucket_lengths must be increasing positive"),
    ({"bucket_lengths": [8, True]}, "param train.bucket_lengths must be increasing positive"),
    ({"bucket_lengths": []}, "param train.bucket_lengths must be increasing positive"),
    ({"learning_rate": -1e-5}, "param train.learning_rate must be > 0"),
    ({"epochs": 1.5}, "param train.epochs must be an integer"),
    ({"xla": True, "distribution": "mirrored"}, "param train.xla: true needs train.distribution"),
    ({"classifier_dropout": 1.0}, "param train.classifier_dropout must be in [0, 1)"),
    ({"warmup_ratio": -0.1}, "param train.warmup_ratio must be in [0, 1)"),
    ({"precision": "float8"}, "param train.precision must be one of float32, "),
], ids=["unsorted buckets", "repeated bucket", "bool bucket", "no buckets", "negative lr",
        "fractional epochs", "xla and mirrored", "dropout 1", "negative warm-up", "precision"])
def test_bad_train_params_name_the_param(train_params, train, message):
    train_params(**train)
    with pytest.raises(PipelineError) as error:
        read_train_settings()
    assert str(error.value).startswith(message), error.value


CLUSTER = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
           "task": {"type": "worker", "index": 1}}


def test_cluster_spec_and_worker_timeout_read_the_environment(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(CLUSTER))
    monkeypatch.delenv("EMOTION_WORKER_TIMEOUT", raising=False)
    assert cluster_spec() == (CLUSTER["cluster"], "worker", 1)
    assert worker_timeout() == 300.0
    monkeypatch.setenv("EMOTION_WORKER_TIMEOUT", "2.5")
    assert worker_timeout() == 2.5


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TF_CONFIG", None, "param train.distribution: multi_worker needs TF_CONFIG"),
    ("TF_CONFIG", "{cluster", "environment variable TF_CONFIG: "),
    ("TF_CONFIG", json.dumps({**CLUSTER, "task": {"type": "worker", "index": 2}}),
     "environment variable TF_CONFIG: task worker 2 is not in the cluster"),
    ("TF_CONFIG", json.dumps({"cluster": {"worker": "127.0.0.1:1"}, "task": CLUSTER["task"]}),
     "environment variable TF_CONFIG: every task type of the cluster needs a list"),
    ("EMOTION_WORKER_TIMEOUT", "soon", "environment variable EMOTION_WORKER_TIMEOUT must be a "
                                       "positive number of seconds, got 'soon'"),
    ("EMOTION_WORKER_TIMEOUT", "inf", "environment variable EMOTION_WORKER_TIMEOUT must be"),
    ("EMOTION_WORKER_TIMEOUT", "0", "environment variable EMOTION_WORKER_TIMEOUT must be"),
], ids=["no TF_CONFIG", "not JSON", "task not in cluster", "hosts not a list",
        "timeout not a number", "infinite timeout", "zero timeout"])
def test_bad_cluster_environment_names_the_variable(monkeypatch, variable, value, message):
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    read = worker_timeout if variable == "EMOTION_WORKER_TIMEOUT" else cluster_spec
    with pytest.raises(PipelineError) as error:
        read()
    assert str(error.value).startswith(message), error.value


def test_every_param_dvc_yaml_declares_is_in_the_repos_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = [name for stage in stages.values() for name in stage.get("params", [])]
    assert len(declared) > 10
    for name in declared:
        value = params
        for key in name.split("."):  # a section, or section.key
            assert isinstance(value, dict) and key in value, name
            value = value[key]

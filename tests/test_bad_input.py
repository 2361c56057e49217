"""Bad params or data: a one-line error naming the problem, a non-zero exit, old outputs kept,
and nothing half-written left behind.

Every case runs its stage in this process (the stage's own code path); a few run it as the
`python -m stages.<name>` process that DVC starts, where the error must be the last line of
stderr after TensorFlow's start-up logs."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import datasets
import pytest
from conftest import (
    LABELS,
    copy_workspace,
    declared_outputs,
    digest,
    dvc,
    dvc_status,
    run_stage,
    run_stage_in_process,
    sh,
    tiny_params,
    write_params,
)

from emotion.files import atomic_output, atomic_outputs


def staging_leftovers(project: Path) -> list[Path]:
    return [path for path in project.rglob(".*.staging-*")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dvc_repo) -> Path:
    """A copy of the shared pipeline run's workspace: every stage's outputs, no git or DVC."""
    return copy_workspace(dvc_repo[0], tmp_path_factory.mktemp("trained") / "project")


@pytest.fixture
def prepared(trained, tmp_path, monkeypatch) -> Path:
    """A copy of `trained` (its outputs must survive bad reruns)."""
    folder = tmp_path / "project"
    shutil.copytree(trained, folder)
    monkeypatch.chdir(folder)
    return folder


def edit(section: str, **changes):
    def apply(params, project, assets):
        params[section].update(changes)
    return apply


def dataset_without_split(params, project, assets):
    folder = project / "broken"
    shutil.copytree(assets["dataset"], folder)
    (folder / "test.parquet").unlink()
    params["data"]["dataset"] = str(folder)


def dataset_with_empty_text(params, project, assets):
    folder = project / "broken"
    shutil.copytree(assets["dataset"], folder)
    data = datasets.Dataset.from_parquet(str(folder / "train.parquet"))
    texts = list(data["text"])
    texts[5] = "   "
    data = data.remove_columns("text").add_column("text", texts)
    (folder / "train.parquet").unlink()
    data.to_parquet(str(folder / "train.parquet"))
    params["data"]["dataset"] = str(folder)


def write_split(folder: Path, split: str, texts: list[str], labels: list[int],
                names: list[str]) -> None:
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names)})
    path = folder / f"{split}.parquet"
    path.unlink(missing_ok=True)
    datasets.Dataset.from_dict({"text": texts, "label": labels},
                               features=features).to_parquet(str(path))


def dataset_copy(params, project, assets) -> Path:
    folder = project / "broken"
    shutil.copytree(assets["dataset"], folder)
    params["data"]["dataset"] = str(folder)
    return folder


def dataset_with_empty_split(params, project, assets):
    write_split(dataset_copy(params, project, assets), "test", [], [], LABELS)


def dataset_with_other_label_names(params, project, assets):
    write_split(dataset_copy(params, project, assets), "test", ["i am glad"], [1],
                [*LABELS[:-1], "disgust"])


def dataset_with_repeated_label_names(params, project, assets):
    """A parquet file whose ClassLabel declares "joy" twice (datasets refuses to write one,
    so the file is written with pyarrow, as another tool might)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset_copy(params, project, assets)
    table = pq.read_table(folder / "test.parquet")
    features = json.loads(table.schema.metadata[b"huggingface"])
    features["info"]["features"]["label"]["names"] = [*LABELS[:-1], "joy"]
    schema = table.schema.with_metadata({b"huggingface": json.dumps(features).encode()})
    pq.write_table(pa.Table.from_arrays(table.columns, schema=schema), folder / "test.parquet")


def truncated_raw_parquet(params, project, assets):
    path = project / "data/raw/train.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty_raw_split(params, project, assets):
    write_split(project / "data/raw", "validation", [], [], LABELS)


def seven_labels_at_evaluate(params, project, assets):
    """Data whose labels go beyond the model's six."""
    write_split(project / "data/raw", "validation", ["i am glad", "ugh"], [1, 6],
                [*LABELS, "disgust"])


def params_not_yaml(params, project, assets):
    params["__raw__"] = "train:\n  seed: [1, 2\n"


def non_bert_checkpoint(params, project, assets):
    from transformers import DistilBertConfig, TFDistilBertModel

    folder = project / "distilbert"
    shutil.copytree(assets["model"], folder, ignore=shutil.ignore_patterns("*.h5", "config.json"))
    config = DistilBertConfig(vocab_size=len((folder / "vocab.txt").read_text().split()),
                              dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128)
    model = TFDistilBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(folder))
    params["model"]["checkpoint"] = str(folder)
    params["train"]["pooling"] = "mean"


def tokenizer_without_pad_token(params, project, assets):
    folder = project / "nopad"
    shutil.copytree(assets["model"], folder)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((folder / name).read_text())
        config["pad_token"] = None
        (folder / name).write_text(json.dumps(config))
    params["model"]["checkpoint"] = str(folder)


CASES = {
    "negative learning rate": ("train", edit("train", learning_rate=-1e-5),
                               "train.learning_rate"),
    "zero epochs": ("train", edit("train", epochs=0), "train.epochs"),
    "non-integer batch size": ("train", edit("train", batch_size="big"), "train.batch_size"),
    "unsorted buckets": ("train", edit("train", bucket_lengths=[16, 8]), "train.bucket_lengths"),
    "unknown pooling": ("train", edit("train", pooling="max"), "train.pooling"),
    "unknown schedule": ("train", edit("train", lr_schedule="cosine"), "train.lr_schedule"),
    "warm-up ratio of 1": ("train", edit("train", warmup_ratio=1.0), "train.warmup_ratio"),
    "bucket too short": ("train", edit("train", bucket_lengths=[4]), "train.bucket_lengths"),
    "unknown text column": ("download", edit("data", text_column="tweet"), "tweet"),
    "unknown label column": ("download", edit("data", label_column="emotion"), "emotion"),
    "missing dataset folder": ("download", edit("data", dataset="./no/such/folder"),
                               "no/such/folder"),
    "missing split": ("download", dataset_without_split, "test"),
    "empty text": ("download", dataset_with_empty_text, "row 5"),
    "zero max length": ("tokenize", edit("model", max_length=0), "model.max_length"),
    "missing checkpoint": ("tokenize", edit("model", checkpoint="./no/such/model"),
                           "model.checkpoint"),
    "train: missing checkpoint": ("train", edit("model", checkpoint="./no/such/model"),
                                  "model.checkpoint"),
    "zero eda bin width": ("eda", edit("eda", length_bin_width=0), "eda.length_bin_width"),
    "classifier dropout of 1": ("train", edit("train", classifier_dropout=1.0),
                                "train.classifier_dropout"),
    "unknown classifier init": ("train", edit("train", classifier_init="zeros"),
                                "train.classifier_init"),
    "unknown precision": ("train", edit("train", precision="float8"), "train.precision"),
    "unknown distribution": ("train", edit("train", distribution="horovod"),
                             "train.distribution"),
    "xla not a boolean": ("train", edit("train", xla="yes"), "train.xla"),
    "xla beside a distribution": ("train", edit("train", xla=True, distribution="mirrored"),
                                  "param train.xla: true needs train.distribution none"),
    "float16 without a GPU": ("train", edit("train", precision="mixed_float16"),
                              "mixed_float16 needs an NVIDIA GPU"),
    "params.yaml not YAML (download)": ("download", params_not_yaml, "params.yaml line"),
    "params.yaml not YAML (train)": ("train", params_not_yaml, "params.yaml line"),
    "empty split at download": ("download", dataset_with_empty_split, '"test"'),
    "empty split at tokenize": ("tokenize", empty_raw_split, "validation.parquet"),
    "empty split at eda": ("eda", empty_raw_split, "validation.parquet"),
    "truncated parquet at tokenize": ("tokenize", truncated_raw_parquet, "train.parquet"),
    "truncated parquet at eda": ("eda", truncated_raw_parquet, "train.parquet"),
    "labels beyond the model's at evaluate": ("evaluate", seven_labels_at_evaluate,
                                              "disgust"),
    "label names differ between splits": ("download", dataset_with_other_label_names,
                                          "different label names"),
    "label names repeat": ("download", dataset_with_repeated_label_names,
                           "joy declared more than once"),
    "mean pooling on a non-BERT checkpoint": ("train", non_bert_checkpoint, "train.pooling"),
    "tokenizer without a pad token": ("tokenize", tokenizer_without_pad_token,
                                      "padding token"),
}


# Also run as the process DVC starts: one case of each kind of stage start-up.
PROCESS_CASES = ["negative learning rate", "missing dataset folder",
                 "truncated parquet at tokenize", "labels beyond the model's at evaluate"]


@pytest.mark.parametrize("case", [*CASES, *(f"{case} (process)" for case in PROCESS_CASES)])
def test_bad_input_fails_cleanly_and_keeps_outputs(prepared, assets, case):
    in_process = not case.endswith(" (process)")
    stage, change, named = CASES[case.removesuffix(" (process)")]
    outputs = declared_outputs(prepared)
    before = digest(*outputs)
    params = tiny_params(assets)
    change(params, prepared, assets)
    if "__raw__" in params:
        (prepared / "params.yaml").write_text(params["__raw__"])
    else:
        write_params(prepared, params)
    inputs_changed = digest(*outputs)  # some cases damage a stage's input on purpose

    result = (run_stage_in_process if in_process else run_stage)(stage, prepared)

    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and named in message, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    if case == "negative learning rate (process)":  # checked before TensorFlow loads: none
        assert result.stderr.strip().splitlines() == [message]  # of its start-up logs
    assert declared_outputs(prepared) == outputs
    assert digest(*outputs) == inputs_changed
    assert {k for k in before if before[k] != inputs_changed[k]} <= {
        str(prepared / "data/raw/train.parquet"), str(prepared / "data/raw/validation.parquet")}
    assert staging_leftovers(prepared) == []


def test_a_failure_while_writing_keeps_the_previous_output(tmp_path):
    """A failure after writing has begun (inside atomic_output) leaves the old output whole."""
    output = tmp_path / "data/tokenized"
    output.mkdir(parents=True)
    (output / "train.parquet").write_text("previous")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(output) as staging:
            staging.mkdir()
            (staging / "train.parquet").write_text("half of the new")
            (staging / "validation.parquet").write_text("new")
            raise RuntimeError("disk full")
    assert [path.name for path in output.iterdir()] == ["train.parquet"]
    assert (output / "train.parquet").read_text() == "previous"
    assert staging_leftovers(tmp_path) == []


def test_outputs_written_together_replace_all_or_none(tmp_path):
    """A stage's outputs (model folder, metrics file) are moved into place together: a failure
    after all of them are written keeps every old one; success replaces every one."""
    model, metrics = tmp_path / "models/emotion", tmp_path / "metrics/train.json"
    model.mkdir(parents=True)
    (model / "weights.h5").write_text("old weights")
    (model / "stale.txt").write_text("only in the old model")
    metrics.parent.mkdir()
    metrics.write_text("old metrics")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_outputs(model, metrics) as (new_model, new_metrics):
            new_model.mkdir()
            (new_model / "weights.h5").write_text("new weights")
            new_metrics.write_text("new metrics")
            raise RuntimeError("killed")
    assert sorted(path.name for path in model.iterdir()) == ["stale.txt", "weights.h5"]
    assert (model / "weights.h5").read_text() == "old weights"
    assert metrics.read_text() == "old metrics"
    assert staging_leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match="nothing was written to .*train.json"):
        with atomic_outputs(model, metrics) as (new_model, new_metrics):
            new_model.mkdir()
    assert (model / "weights.h5").read_text() == "old weights"

    with atomic_outputs(model, metrics) as (new_model, new_metrics):
        new_model.mkdir()
        (new_model / "weights.h5").write_text("new weights")
        new_metrics.write_text("new metrics")
    assert sorted(path.name for path in model.iterdir()) == ["weights.h5"]
    assert (model / "weights.h5").read_text() == "new weights"
    assert metrics.read_text() == "new metrics"
    assert staging_leftovers(tmp_path) == []


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_staging_leftovers_of_killed_runs_are_ignored_and_cleaned_up(dvc_repo):
    root, _ = dvc_repo
    leftover = root / "data" / f".raw.staging-{dead_pid()}-x1y2"
    (leftover / "raw").mkdir(parents=True)
    (leftover / "raw/train.parquet").write_bytes(b"half written")
    live = root / "data" / f".raw.staging-{os.getpid()}-live"  # a write still under way
    live.mkdir()
    try:
        assert sh(root, "git", "status", "--porcelain", "--untracked-files=all") == ""
        assert dvc_status(root) == {}
        dvc(root, "repro", "-f", "-s", "download")
        assert not leftover.exists()
        assert live.exists()  # its process is alive: not ours to remove
    finally:
        shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)

"""Bad params or data: a one-line error naming the problem, a non-zero exit, old outputs kept."""

import shutil

import datasets
import pytest
from conftest import run_stage, tiny_params, write_params
from test_stages import digest, run_ok


@pytest.fixture
def prepared(project):
    """A project whose data stages have run once (their outputs must survive bad reruns)."""
    for stage in ("download", "tokenize"):
        run_ok(stage, project)
    return project


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
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_fails_cleanly_and_keeps_outputs(prepared, assets, case):
    stage, change, named = CASES[case]
    params = tiny_params(assets)
    change(params, prepared, assets)
    write_params(prepared, params)
    before = digest(prepared / "data")

    result = run_stage(stage, prepared)

    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and named in message, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert digest(prepared / "data") == before
    assert not list(prepared.glob("**/.*.tmp*")) and not list((prepared / "data").glob(".*"))

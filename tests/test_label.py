"""emotion-label on a real Dask cluster: a local cluster of 2 worker processes (a real
scheduler), the tiny runtime folder, parquet datasets on disk and on the suite's real S3
server; workers and the client killed by pid mid-job."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import HARD_TEXTS, require
from hypothesis import given, settings
from hypothesis import strategies as st

from emotion.files import STAGING_MARK

pytest.importorskip("pyarrow")
BIN = Path(sys.executable).parent
TEXTS = [text for text in HARD_TEXTS if text.strip()]


def have_dask() -> None:
    import importlib.util

    require(importlib.util.find_spec("distributed") is not None,
            "Dask (the cluster extra: make setup)")


def write_dataset(folder: Path, partitions: int, rows: int = 40) -> dict[str, pa.Table]:
    """`partitions` parquet files (two in a subfolder) of ids, texts and another column."""
    tables = {}
    for index in range(partitions):
        name = f"{'day2/' if index >= partitions - 2 else ''}part{index}.parquet"
        ids = list(range(index * 1000, index * 1000 + rows))
        texts = [f"{TEXTS[(row * 7 + index) % len(TEXTS)]} {row}" for row in range(rows)]
        tables[name] = pa.table({"id": ids, "text": texts, "lang": ["en"] * rows})
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tables[name], folder / name)
    return tables


def label(*args: str, env: dict | None = None, **options) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "emotion-label", "--no-progress", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, **options)


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_every_row_is_labelled_as_text_classifier_labels_it_ids_and_order_kept(
        runtime_folders, tmp_path):
    """Each output file: the kept columns in input order, the label (null below --min-prob)
    and probabilities equal to TextClassifier.predict's on the same texts (<= 1e-6), the
    model's and input's identity in its metadata; a rerun skips everything, bytes unchanged."""
    have_dask()
    import json

    from emotion.predict import TextClassifier
    from emotion.prediction.corpus import METADATA_KEY, label_dataset, model_identity

    tables = write_dataset(tmp_path / "in", 4)
    folder = runtime_folders["onnx"]
    classifier = TextClassifier(folder)
    tops = classifier.predict(tables["part0.parquet"]["text"].to_pylist()).probabilities.max(1)
    threshold = float(np.median(tops))  # some labels kept, some null
    summary = label_dataset(str(tmp_path / "in"), str(tmp_path / "out"), model=folder,
                            workers=2, columns=["id"], min_prob=threshold, progress=False)
    assert (summary.written, summary.skipped, summary.texts, summary.failures) == (4, 0, 160, [])
    for name, table in tables.items():
        output = pq.read_table(tmp_path / "out" / name)
        assert output.column_names == ["id", "label", "probability", *(
            f"prob_{label}" for label in classifier.labels)]
        assert output["id"].to_pylist() == table["id"].to_pylist()
        expected = classifier.predict(table["text"].to_pylist())
        scores = np.stack([output[f"prob_{label}"].to_numpy() for label in classifier.labels],
                          axis=1)
        assert np.abs(scores - expected.probabilities).max() <= 1e-6
        assert output["label"].to_pylist() == expected.top(threshold)
        if name == "part0.parquet":
            assert 0 < output["label"].null_count < len(table)
        identity = json.loads(output.schema.metadata[METADATA_KEY])
        assert identity["model"] == model_identity(folder)
        assert identity["runtime"] == classifier.runtime
    before = outputs(tmp_path / "out")
    again = label_dataset(str(tmp_path / "in"), str(tmp_path / "out"), model=folder,
                          columns=["id"], min_prob=threshold, progress=False)
    assert (again.written, again.skipped) == (0, 4) and outputs(tmp_path / "out") == before
    # Other settings are another job: no --min-prob relabels every partition.
    other = label_dataset(str(tmp_path / "in"), str(tmp_path / "out"), model=folder,
                          columns=["id"], progress=False)
    assert (other.written, other.skipped) == (4, 0)
    assert pq.read_table(tmp_path / "out/part0.parquet")["label"].null_count == 0


def wait_for(marker: Path, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.1)
    return int(marker.read_text())


def test_a_worker_process_killed_mid_job_is_retried_and_every_row_written_once(
        runtime_folders, tmp_path, monkeypatch):
    """The worker labelling part2 is SIGKILLed by its pid while it works on it: Dask gives
    the partition to another worker, the job completes, every file holds each row once."""
    have_dask()
    from emotion.prediction.corpus import FAULT_VARIABLE, label_dataset

    tables = write_dataset(tmp_path / "in", 5)
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv(FAULT_VARIABLE, f"part2.parquet:{marker}")  # inherited by the workers
    result = {}
    job = threading.Thread(target=lambda: result.update(summary=label_dataset(
        str(tmp_path / "in"), str(tmp_path / "out"), model=runtime_folders["onnx"],
        workers=2, progress=False)))
    job.start()
    worker = wait_for(marker)
    assert worker != os.getpid()
    os.kill(worker, signal.SIGKILL)
    job.join(timeout=240)
    assert not job.is_alive()
    summary = result["summary"]
    assert (summary.written, summary.failures, summary.texts) == (5, [], 200)
    for name, table in tables.items():
        assert pq.read_table(tmp_path / "out" / name)["id"].to_pylist() == table["id"].to_pylist()
    assert not [path for path in (tmp_path / "out").rglob("*") if STAGING_MARK in path.name]


def test_a_client_killed_mid_job_resumes_to_the_same_bytes(runtime_folders, tmp_path):
    """emotion-label (its process group: the client and its local cluster) is SIGKILLed
    while a worker labels part3: the partitions written stay, no partial file is left where
    an output belongs, and a rerun skips them and ends with the bytes of an uninterrupted
    run."""
    have_dask()
    from emotion.prediction.corpus import FAULT_VARIABLE

    write_dataset(tmp_path / "in", 6)
    model = ["--model", str(runtime_folders["onnx"]), "--workers", "1"]
    reference = label(str(tmp_path / "in"), "--output", str(tmp_path / "reference"), *model)
    assert reference.returncode == 0, reference.stderr
    marker = tmp_path / "hung.pid"
    job = subprocess.Popen(
        [BIN / "emotion-label", "--no-progress", str(tmp_path / "in"), "--output",
         str(tmp_path / "out"), *model], stderr=subprocess.PIPE, text=True,
        env={**os.environ, FAULT_VARIABLE: f"part3.parquet:{marker}"},
        start_new_session=True)
    wait_for(marker)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    written = [name for name in outputs(tmp_path / "out") if STAGING_MARK not in name]
    assert 0 < len(written) < 6 and "part3.parquet" not in written
    resumed = label(str(tmp_path / "in"), "--output", str(tmp_path / "out"), *model)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{6 - len(written)} partitions written, {len(written)} skipped" in resumed.stderr
    assert outputs(tmp_path / "out") == outputs(tmp_path / "reference")  # nothing left over


def test_each_bad_partition_is_one_line_and_the_others_are_written(runtime_folders, tmp_path):
    have_dask()
    write_dataset(tmp_path / "in", 2)
    pq.write_table(pa.table({"tweet": ["i am glad"]}), tmp_path / "in/no_text.parquet")
    (tmp_path / "in/garbage.parquet").write_bytes(b"PAR1 not parquet at all")
    pq.write_table(pa.table({"text": ["i am glad", None]}), tmp_path / "in/null.parquet")
    pq.write_table(pa.table({"text": ["i am glad", "ok", "  "]}), tmp_path / "in/empty.parquet")
    result = label(str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model",
                   str(runtime_folders["onnx"]))
    assert result.returncode == 1
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert len(errors) == 4, result.stderr
    assert "empty.parquet: row 2: an empty text in column 'text'" in errors[0]
    assert "garbage.parquet: cannot read it as parquet" in errors[1]
    assert "no_text.parquet: no column 'text' (it has: tweet)" in errors[2]
    assert "null.parquet: row 1: a null text in column 'text'" in errors[3]
    assert "2 partitions written, 0 skipped (done before), 4 failed" in result.stderr
    assert sorted(outputs(tmp_path / "out")) == ["day2/part0.parquet", "day2/part1.parquet"]
    assert "Traceback" not in result.stderr


def test_input_output_and_model_on_s3(runtime_folders, tmp_path, s3):
    """A dataset on the suite's real S3 server, labelled into the same bucket by the model
    folder stored there too (credentials as boto takes them, the endpoint by
    --storage-options): the same rows and scores as the same files labelled on disk by the
    local folder; the model downloaded once into the machine's cache; a rerun skips all."""
    have_dask()
    import json

    import s3fs

    tables = write_dataset(tmp_path / "in", 3)
    options = {"endpoint_url": s3.endpoint}
    store = s3fs.S3FileSystem(key=s3.access_key, secret=s3.secret_key,
                              client_kwargs={"endpoint_url": s3.endpoint})
    for name in tables:
        store.put(str(tmp_path / "in" / name), f"{s3.bucket}/tweets/{name}")
    for path in runtime_folders["onnx"].iterdir():
        store.put(str(path), f"{s3.bucket}/model/{path.name}")
    env = {**s3.credentials, "AWS_DEFAULT_REGION": "us-east-1",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    storage = ["--storage-options", json.dumps(options)]
    args = ["--model", f"s3://{s3.bucket}/model", *storage]
    remote = label(f"s3://{s3.bucket}/tweets", "--output", f"s3://{s3.bucket}/labelled",
                   *args, env=env)
    assert remote.returncode == 0, remote.stderr
    cached = list((tmp_path / "cache/emotion/models").iterdir())
    assert len(cached) == 1 and not cached[0].name.count(".tmp-")
    local = label(str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model",
                  str(runtime_folders["onnx"]), *storage)
    assert local.returncode == 0, local.stderr
    for name in tables:
        with store.open(f"{s3.bucket}/labelled/{name}", "rb") as file:
            got = pq.read_table(file)
        expected = pq.read_table(tmp_path / "out" / name)
        assert got.to_pylist() == expected.to_pylist()
    again = label(f"s3://{s3.bucket}/tweets", "--output", f"s3://{s3.bucket}/labelled", *args,
                  env=env)
    assert again.returncode == 0 and "0 partitions written, 3 skipped" in again.stderr


def test_without_the_cluster_extra_it_says_what_to_install(runtime_folders, tmp_path):
    """The prediction-only install has no Dask: emotion-label is one line and exit 1, and
    emotion-predict there never needed it."""
    command = Path(__file__).resolve().parents[1] / ".venv-predict/bin/emotion-label"
    require(command.exists(), "the prediction-only install (make setup-predict)")
    write_dataset(tmp_path / "in", 1)
    result = subprocess.run([command, str(tmp_path / "in"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: emotion-label needs the cluster extra "
                                    "(pip install '.[cluster]')")


def test_on_an_existing_cluster_by_its_scheduler_address(runtime_folders, tmp_path):
    """--scheduler ADDRESS: a cluster started apart (its own scheduler and worker processes)
    runs the job and gives the bytes of the default local cluster's."""
    have_dask()
    from distributed import LocalCluster

    write_dataset(tmp_path / "in", 3)
    model = ["--model", str(runtime_folders["onnx"])]
    local = label(str(tmp_path / "in"), "--output", str(tmp_path / "local"), *model)
    assert local.returncode == 0, local.stderr
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = label(str(tmp_path / "in"), "--output", str(tmp_path / "remote"), *model,
                       "--scheduler", cluster.scheduler_address)
        assert remote.returncode == 0, remote.stderr
        assert "3 partitions written" in remote.stderr
    assert outputs(tmp_path / "remote") == outputs(tmp_path / "local")


def test_files_it_did_not_write_are_never_replaced(runtime_folders, tmp_path):
    """A file at an output path that emotion-label did not write (no identity in its
    metadata, or not parquet) is one line and stays byte for byte; the other partitions are
    written. --output naming the input folder: every input is such a file, none replaced."""
    have_dask()
    write_dataset(tmp_path / "in", 3)
    (tmp_path / "out").mkdir()
    pq.write_table(pa.table({"mine": [1, 2]}), tmp_path / "out/part0.parquet")
    (tmp_path / "out/day2").mkdir()
    (tmp_path / "out/day2/part1.parquet").write_bytes(b"my notes, not parquet")
    before = outputs(tmp_path / "out")
    model = ["--model", str(runtime_folders["onnx"])]
    result = label(str(tmp_path / "in"), "--output", str(tmp_path / "out"), *model)
    assert result.returncode == 1, result.stderr
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert len(errors) == 2 and all("was not written by emotion-label; it is left as it is"
                                    in line for line in errors), result.stderr
    assert "1 partitions written, 0 skipped (done before), 2 failed" in result.stderr
    after = outputs(tmp_path / "out")
    assert {name: after[name] for name in before} == before
    assert sorted(after) == sorted([*before, "day2/part2.parquet"])
    inputs = outputs(tmp_path / "in")
    onto_inputs = label(str(tmp_path / "in"), "--output", str(tmp_path / "in"), *model)
    assert onto_inputs.returncode == 1 and "3 failed" in onto_inputs.stderr
    assert outputs(tmp_path / "in") == inputs


# --- Any partition: its rows labelled in order, or one line naming it (and the row) ----------

SETTINGS = {"text_column": "text", "columns": None, "min_prob": None, "runtime": None}


def label_one(folder: Path, source: Path) -> pa.Table:
    """label_partition in this process (the function each Dask task runs), into a file
    beside the source."""
    from emotion.prediction.corpus import Partition, label_partition, model_identity

    target = source.with_name("labelled.parquet")
    label_partition(Partition(str(source), "id", str(target)), model=str(folder),
                    model_id=model_identity(folder), settings=SETTINGS, batch_size=8,
                    storage_options={})
    return pq.read_table(target)


@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=30), max_size=10))
def test_any_texts_are_labelled_in_order_or_the_first_blank_row_is_named(runtime_folders,
                                                                        texts):
    import tempfile

    from emotion.prediction.corpus import PartitionError

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in.parquet"
        pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), source)
        blank = [row for row, text in enumerate(texts) if not text.strip()]
        if blank:
            with pytest.raises(PartitionError) as error:
                label_one(runtime_folders["onnx"], source)
            assert str(error.value) == (f"{source}: row {blank[0]}: an empty text in column "
                                        "'text'")
            assert not (Path(scratch) / "labelled.parquet").exists()
            return
        output = label_one(runtime_folders["onnx"], source)
        assert output["id"].to_pylist() == list(range(len(texts)))
        assert output["text"].to_pylist() == texts
        scores = np.stack([output[name].to_numpy() for name in output.column_names
                           if name.startswith("prob_")], axis=1)
        assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)
        assert output["label"].null_count == 0


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_partition_or_one_line_naming_it(runtime_folders, data):
    import tempfile

    from emotion.prediction.corpus import PartitionError

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in.parquet"
        source.write_bytes(b"PAR1" + data)
        with pytest.raises(PartitionError) as error:
            label_one(runtime_folders["onnx"], source)
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{source}: ")
        assert not (Path(scratch) / "labelled.parquet").exists()

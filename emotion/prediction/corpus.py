"""Labelling a corpus on Dask (the `cluster` extra): every partition (file) of a parquet
dataset, local or on S3 (fsspec), labelled on the workers of a `dask.distributed` cluster (a
local one of worker processes, or any existing one by its scheduler's address), one output
file per input file.

- Each worker process loads the model folder once (TextClassifier: the same runtime choice,
  padding-bounded batches and load-time checks as emotion-predict), with the engine's threads
  set to the worker's threads; nothing unpicklable is ever shipped: tasks carry paths.
- An output file holds the columns kept, `label` (null below min_prob), `probability` and one
  `prob_<label>` column per label, rows in input order, and in its parquet metadata the
  model's identity (a hash of the folder's files) and the input file's (path, size,
  modification time or ETag). It is written whole or not at all: locally to a temporary name,
  fsynced, then renamed; on S3 the object exists only once its upload completes.
- A rerun skips each partition whose output carries the same model and input identities, so a
  job killed at any instant resumes to the same bytes; Dask retries the tasks of a worker
  process that dies, and a retried partition replaces nothing half-written.
- A bad partition (unreadable file, no text column, a null or empty text) is one line naming
  it (and the row); the others are labelled and kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, as_completed, get_worker
from fsspec.implementations.local import LocalFileSystem

from emotion.errors import PipelineError, UsageError, first_line
from emotion.files import user_file_output
from emotion.paths import ONNX_DIR
from emotion.prediction.backend import DEFAULT_BATCH_SIZE

METADATA_KEY = b"emotion.label"  # the parquet metadata key of an output's identities
MODEL_FILES = ("runtime.json", "tokenizer.json", "model.onnx", "model.int8.onnx")
CHUNK = 4096  # texts labelled at a time on a worker
# A test hook: "SUBSTRING:MARKER" makes the worker that takes the first partition whose path
# holds SUBSTRING write its pid to the file MARKER and hang (only while MARKER is absent), so
# a test can kill it, or the client, mid-job.
FAULT_VARIABLE = "EMOTION_LABEL_HANG"


class PartitionError(PipelineError):
    """A partition that cannot be labelled, told in one line naming it."""


@dataclass(frozen=True)
class Partition:
    """One input file and the output file it becomes."""

    source: str
    identity: str  # path, size and modification time (ETag on S3) of the input file
    target: str


@dataclass
class Summary:
    """What a job did."""

    texts: int = 0
    written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.texts / self.seconds if self.seconds else 0.0
        return (f"labelled {self.texts:,} texts: {self.written} partitions written, "
                f"{self.skipped} skipped (done before), {len(self.failures)} failed, "
                f"{self.seconds:.1f} s, {rate:,.0f} texts/s")


def model_identity(folder: str | Path, options: dict[str, Any] | None = None) -> str:
    """A hash of the runtime folder's files (settings, tokenizer, graphs), local or not."""
    filesystem, root = fsspec.core.url_to_fs(str(folder), **(options or {}))
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = posixpath.join(root, name)
        if filesystem.isfile(path):
            with filesystem.open(path, "rb") as file:
                digest.update(name.encode() + hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()


def local_model(model: str, model_id: str, options: dict[str, Any]) -> str:
    """The model folder as a local path: itself where it is local; else its copy in this
    machine's cache ($XDG_CACHE_HOME or ~/.cache, emotion/models/<identity>), downloaded once
    (by whichever process gets there first) and checked against the identity the job
    started with."""
    filesystem, root = fsspec.core.url_to_fs(model, **options)
    if isinstance(filesystem, LocalFileSystem):
        return root
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "emotion" / "models" / model_id
    if not folder.is_dir():
        staged = folder.with_name(f"{model_id}.tmp-{uuid.uuid4().hex}")
        staged.mkdir(parents=True)
        try:
            for name in MODEL_FILES:
                if filesystem.isfile(posixpath.join(root, name)):
                    filesystem.get(posixpath.join(root, name), str(staged / name))
            if model_identity(staged) != model_id:
                raise PartitionError(f"{model}: its files changed since the job started")
            try:
                os.rename(staged, folder)  # whole, or another process's copy is there
            except OSError:
                pass
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return str(folder)


def plan(source: str | Sequence[str], output: str,
         storage_options: dict[str, Any] | None) -> list[Partition]:
    """The input's parquet files (a folder, a glob or a list of files), each with its output
    file: its path relative to the inputs' common folder, under `output`."""
    options = storage_options or {}
    filesystem, _, paths = fsspec.get_fs_token_paths(source, storage_options=options)
    if len(paths) == 1 and filesystem.isdir(paths[0]):
        paths = [path for path in filesystem.find(paths[0]) if path.endswith(".parquet")]
    paths = sorted(paths)
    if not paths:
        raise UsageError(f"{source}: no parquet files there")
    root = (posixpath.dirname(paths[0]) if len(paths) == 1
            else posixpath.commonpath(paths))
    output_filesystem, output_root = fsspec.core.url_to_fs(output, **options)
    partitions = []
    for path in paths:
        info = filesystem.info(path)
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        identity = f"{filesystem.unstrip_protocol(path)}|{info.get('size')}|{stamp}"
        target = output_filesystem.unstrip_protocol(
            posixpath.join(output_root, posixpath.relpath(path, root)))
        partitions.append(Partition(filesystem.unstrip_protocol(path), identity, target))
    return partitions


def output_state(partition: Partition, model: str, settings: dict[str, Any],
                 options: dict[str, Any]) -> str:
    """What is at the partition's output: "missing"; "done" (written by this command for
    this model, input and job settings: the columns kept, the text column, min_prob, a
    forced runtime); "stale" (written by this command otherwise: to be relabelled); or
    "foreign" (anything this command did not write, never replaced)."""
    filesystem, path = fsspec.core.url_to_fs(partition.target, **options)
    if not filesystem.exists(path):
        return "missing"
    try:
        with filesystem.open(path, "rb") as file:
            metadata = pq.read_schema(file).metadata or {}
        recorded = json.loads(metadata[METADATA_KEY])
    except (pa.ArrowException, OSError, KeyError, ValueError):
        return "foreign"
    if not isinstance(recorded, dict):
        return "foreign"
    same = (recorded.get("model") == model and recorded.get("input") == partition.identity
            and recorded.get("settings") == settings)
    return "done" if same else "stale"


# --- On the workers --------------------------------------------------------------------------

_classifiers: dict[tuple, Any] = {}  # one per worker process and settings


def worker_classifier(model: str, runtime: str | None, batch_size: int):
    """This worker process's classifier, loaded once, with the worker's threads."""
    from emotion.prediction.classifier import TextClassifier

    try:
        threads = get_worker().state.nthreads
    except ValueError:  # not on a Dask worker
        threads = 0
    key = (model, runtime, batch_size, threads)
    if key not in _classifiers:
        _classifiers[key] = TextClassifier(model, runtime=runtime, batch_size=batch_size,
                                           threads=threads)
    return _classifiers[key]


def label_partition(partition: Partition, *, model: str, model_id: str,
                    settings: dict[str, Any], batch_size: int,
                    storage_options: dict[str, Any]) -> int:
    """Label one partition and write its output whole; the number of texts. settings:
    text_column, columns (None: all), min_prob and runtime (None: the choice rule)."""
    text_column, columns = settings["text_column"], settings["columns"]
    min_prob, runtime = settings["min_prob"], settings["runtime"]
    options = storage_options
    hang_on(partition.source)
    model = local_model(model, model_id, options)
    filesystem, path = fsspec.core.url_to_fs(partition.source, **options)
    try:
        with filesystem.open(path, "rb") as file:
            table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise PartitionError(f"{partition.source}: cannot read it as parquet "
                             f"({first_line(error)})") from None
    for name in [text_column, *(columns or [])]:
        if name not in table.column_names:
            raise PartitionError(f"{partition.source}: no column {name!r} (it has: "
                                 f"{', '.join(table.column_names)})")
    texts = table.column(text_column).to_pylist()
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            what = "a null" if text is None else "an empty" if isinstance(text, str) else \
                f"a non-text ({type(text).__name__})"
            raise PartitionError(f"{partition.source}: row {row}: {what} text in column "
                                 f"{text_column!r}")
    classifier = worker_classifier(model, runtime, batch_size)
    labels, probabilities = [], []
    for start in range(0, len(texts), CHUNK):
        predictions = classifier.predict(texts[start:start + CHUNK])
        labels += predictions.top(min_prob)
        probabilities.append(predictions.probabilities)
    scores = (np.concatenate(probabilities) if probabilities
              else np.zeros((0, len(classifier.labels))))
    kept = table.select(columns) if columns is not None else table
    output = kept.append_column("label", pa.array(labels, pa.string())).append_column(
        "probability", pa.array(scores.max(axis=1, initial=0.0), pa.float32()))
    for index, name in enumerate(classifier.labels):
        output = output.append_column(f"prob_{name}", pa.array(scores[:, index], pa.float32()))
    identity = json.dumps({"model": model_id, "input": partition.identity,
                           "settings": settings, "runtime": classifier.runtime})
    # The input's own metadata (e.g. pandas' index) would not describe the output.
    output = output.replace_schema_metadata({METADATA_KEY: identity.encode()})
    write_whole(output, partition.target, options)
    return len(texts)


def hang_on(source: str) -> None:
    """FAULT_VARIABLE's hang, for tests."""
    hook = os.environ.get(FAULT_VARIABLE)
    if hook:
        substring, marker = hook.split(":", 1)
        if substring in source and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)


def write_whole(table: pa.Table, target: str, options: dict[str, Any]) -> None:
    """The table as a parquet file at target, whole or not at all: locally as
    emotion-predict --output writes (emotion.files.user_file_output: staged beside it,
    fsynced, renamed; a dead writer's staging removed by the next write)."""
    filesystem, path = fsspec.core.url_to_fs(target, **options)
    if isinstance(filesystem, LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with user_file_output(path) as staged:
            pq.write_table(table, staged)
        return
    with filesystem.open(path, "wb") as file:  # an object store: visible once complete
        pq.write_table(table, file)


# --- The client ------------------------------------------------------------------------------


def label_dataset(source: str | Sequence[str], output: str, *, model: str | Path = ONNX_DIR,
                  workers: int = 2, threads_per_worker: int = 1,
                  memory_limit: str | None = "auto", scheduler: str | None = None,
                  columns: list[str] | None = None, text_column: str = "text",
                  min_prob: float | None = None, runtime: str | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE,
                  storage_options: dict[str, Any] | None = None,
                  progress: bool = True) -> Summary:
    """Label every text of a parquet dataset on Dask (module docstring); partitions done
    before for the same model and input are skipped. The summary lists each partition that
    failed, in one line each (the others are written)."""
    from tqdm import tqdm

    from emotion.prediction.runtime_choice import choose_runtime
    from emotion.prediction.runtime_settings import RuntimeSettings

    options = storage_options or {}
    model = str(model)
    model_id = model_identity(model, options)
    # A bad folder or a runtime that cannot run fails here, before any work.
    choose_runtime(RuntimeSettings.read(Path(local_model(model, model_id, options))), runtime)
    partitions = plan(source, output, options)
    summary = Summary()
    settings = {"text_column": text_column, "columns": columns, "min_prob": min_prob,
                "runtime": runtime}
    states = {partition: output_state(partition, model_id, settings, options)
              for partition in partitions}
    todo = [partition for partition in partitions if states[partition] in ("missing", "stale")]
    summary.skipped = sum(state == "done" for state in states.values())
    summary.failures += [f"{partition.target}: exists and was not written by emotion-label; "
                         "it is left as it is (remove it, or choose another --output)"
                         for partition in partitions if states[partition] == "foreign"]
    started = time.perf_counter()
    if not todo:  # nothing left: no cluster to start
        return summary
    cluster = nullcontext() if scheduler else LocalCluster(
        n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
        memory_limit=memory_limit, dashboard_address=None,
        silence_logs=logging.CRITICAL)  # a failed task: the client's one line, no traceback
    with cluster, Client(scheduler or cluster) as client:
        # One key a partition and model: the same partition never runs twice at once.
        futures = [client.submit(
            label_partition, partition, model=model, model_id=model_id, settings=settings,
            batch_size=batch_size, storage_options=options,
            key=f"label-{model_id[:12]}-{hashlib.sha256(partition.identity.encode()).hexdigest()[:24]}")
            for partition in todo]
        bar = tqdm(total=len(todo), unit=" partitions", file=sys.stderr,
                   disable=not progress or None, mininterval=1.0)
        for future in as_completed(futures):
            error = future.exception()
            if error is None:
                summary.texts += future.result()
                summary.written += 1
            elif isinstance(error, PipelineError):
                summary.failures.append(first_line(error))
            else:
                summary.failures.append(f"{type(error).__name__}: {first_line(error)}")
            bar.update(1)
            seconds = time.perf_counter() - started
            bar.set_postfix_str(f"{summary.texts:,} texts, {summary.texts / seconds:,.0f} "
                                "texts/s")
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary

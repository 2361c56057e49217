"""Fixtures: a tiny synthetic emotion dataset and a tiny randomly initialised BERT, built here.

`project` gives a temporary working copy of the pipeline (stages/, dvc.yaml, params.yaml)
whose params point at them, with short training settings. `dvc_repo` is one git + DVC
repository of that project, reproduced once per session and shared: tests that change it put
it back, tests that need their own copy take `copy_workspace` of it.

Stages run as DVC runs them (`run_stage`: a `python -m stages.<name>` process) where the
process is what a test is about, and in this process (`run_in_process`) where only the
stage's behaviour is: that spares TensorFlow's start-up of several seconds a run.
"""

import contextlib
import io
import json
import os
import pickle
import random
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # stages and tools are run in-process from any cwd
    sys.path.insert(0, str(ROOT))

from emotion.process import TENSORFLOW_ENV  # noqa: E402

# Property-based tests: the same examples on every run and machine (derandomized, no example
# database), bounded by each test's max_examples, never by a clock.
settings.register_profile("suite", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
# This process runs stages in-process and imports TensorFlow as they do: with their settings
# (the stage processes the suite starts set the same ones themselves).
os.environ.update(TENSORFLOW_ENV)
# Tests that run DVC, a pipeline stage or a training step: `make test-quick` leaves them out.
PIPELINE_FIXTURES = {"dvc_repo", "project", "trained", "prepared", "tokenized", "experiment",
                     "failing_repo", "queued_experiments", "s3"}
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
CUE_WORDS = {
    "sadness": ["miserable", "lonely", "gloomy"],
    "joy": ["happy", "glad", "cheerful"],
    "love": ["adore", "cherish", "tender"],
    "anger": ["furious", "annoyed", "outraged"],
    "fear": ["scared", "nervous", "terrified"],
    "surprise": ["amazed", "shocked", "astonished"],
}
FILLER = "i feel so very today and the day was quite a little bit more than ever".split()
SPLIT_SIZES = {"train": 96, "validation": 24, "test": 24}
# Hard cases for the tokenizer: accents, emoji, CJK, URLs, mentions, entities, control
# characters, a text longer than max_length (32 tokens for the tiny model), an empty one.
HARD_TEXTS = [
    "i feel so happy today 😀🎉", "Café naïve RÉSUMÉ, i am GLAD", "我很高兴 happy 日本語",
    "see https://example.com/a?b=c&d=e #glad", "@someone i am furious!!!", "&amp; &lt;3 scared",
    "tab\there\nnew\x00nul\x07bell\u200bzero\ufeffbom", "ΟΔΟΣ straße ﬁne ½", "x\ufffdy lonely",
    "Ǆemal ǅ İstanbul", "\x1b[31mred\x1b[0m glad", "<b>bold</b> &#128512;", "a\u0301b\u0308",
    "é" * 60, " ".join(["cheerful"] * 60), "", "   ",
]
# Short runs on 2 cores: a few epochs of a 2-layer, 32-wide BERT on ~100 texts, with one
# bucket length: one training graph to trace (each costs ~4.5 s a run, tracing and its first
# run). The tests of learning, of resuming bucketed epochs and of splitting a partial batch
# across replicas train with BUCKETED (the tiny texts fill its 8 and 16 buckets).
TINY_TRAIN = {"seed": 7, "learning_rate": 1.0e-3, "epochs": 2, "batch_size": 8,
              "bucket_lengths": [32], "eval_batch_size": 16}
BUCKETED = [8, 16, 32]


def make_texts(count: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Texts whose label is signalled by one cue word among filler words."""
    texts, labels = [], []
    for index in range(count):
        label = index % len(LABELS)
        words = rng.sample(FILLER, rng.randint(2, 12)) + [rng.choice(CUE_WORDS[LABELS[label]])]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_dataset(folder: Path, seed: int = 0) -> Path:
    """train/validation/test parquet files with a ClassLabel label column."""
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=LABELS)})
    for split, size in SPLIT_SIZES.items():
        texts, labels = make_texts(size, rng)
        datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features).to_parquet(
            str(folder / f"{split}.parquet"))
    return folder


def write_tiny_bert(folder: Path, dropout: float = 0.1) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a WordPiece tokenizer on our words;
    `dropout` is its hidden and attention dropout (BERT's 0.1 by default)."""
    from transformers import BertConfig, BertTokenizerFast, TFBertModel

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(set(FILLER) | {w for cues in CUE_WORDS.values() for w in cues})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(specials + words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(specials) + len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(folder))
    return folder


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def raw_logits(graph: Path, ids: list[list[int]], batch_size: int = 1) -> np.ndarray:
    """A graph's logits from a plain onnxruntime session: each sequence alone (no padding),
    or in batches of the given size in input order, padded with 0 (the tiny tokenizer's pad
    id): the reference the stage's figures and the backend must agree with."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    rows = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        width = max(map(len, batch))
        mask = np.array([[1] * len(row) + [0] * (width - len(row)) for row in batch], np.int32)
        padded = np.array([row + [0] * (width - len(row)) for row in batch], np.int32)
        rows.append(session.run(None, {"input_ids": padded, "attention_mask": mask})[0])
    return np.concatenate(rows)


def require(present: bool, what: str) -> None:
    """Skip the calling test where `what` is missing from this machine, but fail it in CI
    (CI=true), whose .ci/run must provide it: nothing CI needs is skipped silently."""
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"{what} missing in CI: .ci/run (or make test) must provide it")
        pytest.skip(f"{what} missing")


def under_xdist() -> bool:
    """This process is a pytest-xdist worker."""
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


def built_once(tmp_path_factory, name: str, build):
    """build(folder) once per test run: with pytest-xdist, the first worker to ask builds it in
    a folder all workers share, while the others wait, and each gets its (pickled) result."""
    if not under_xdist():
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    result = shared / f"{name}.pickle"
    with FileLock(shared / f"{name}.lock"):
        if not result.exists():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
            folder.mkdir()
            result.write_bytes(pickle.dumps(build(folder)))
        return pickle.loads(result.read_bytes())


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Shared read-only inputs, built once for all workers: the synthetic dataset, the tiny
    BERT, and one without dropout (whose training does not depend on how random numbers are
    split across devices)."""
    return built_once(tmp_path_factory, "assets", lambda root: {
        "dataset": write_dataset(root / "emotion"), "model": write_tiny_bert(root / "bert"),
        "model_without_dropout": write_tiny_bert(root / "bert-no-dropout", dropout=0.0)})


def write_runtime_folders(root: Path, assets: dict[str, Path]) -> dict[str, Path]:
    """A tiny untrained classifier saved as the train stage saves it (max_length 32), and its
    ONNX runtime folder. Its biases and layer-norm scales are random, as a trained model's
    are: TensorFlow's graph optimizer drops an add of zeros (or a multiply by ones) before
    conversion, and what remains would not be a real model's graph."""
    from emotion.data import load_tokenizer
    from emotion.model import new_classifier
    from emotion.packaging.onnx_folder import write_runtime
    from emotion.tensorflow_backend import TensorFlowBackend

    model = new_classifier(str(assets["model"]), None, LABELS, pooling="cls",
                           classifier_dropout=0.0, classifier_init="glorot_uniform", seed=3)
    rng = np.random.default_rng(3)
    for weight in model.weights:
        if weight.name.split("/")[-1].split(":")[0] in ("bias", "beta", "gamma"):
            weight.assign(weight.numpy() + rng.normal(0, 0.02, weight.shape).astype("float32"))
    model.save_pretrained(str(root / "emotion"))
    tokenizer = load_tokenizer(str(assets["model"]))
    tokenizer.model_max_length = 32
    tokenizer.save_pretrained(str(root / "emotion"))
    block_size = yaml.safe_load((ROOT / "params.yaml").read_text())["onnx"]["int8_block_size"]
    write_runtime(TensorFlowBackend(root / "emotion"), root / "onnx", int8_block_size=block_size)
    return {"tensorflow": root / "emotion", "onnx": root / "onnx"}


@pytest.fixture(scope="session")
def runtime_folders(tmp_path_factory, assets) -> dict[str, Path]:
    """write_runtime_folders, built once for all workers (no DVC, no training)."""
    return built_once(tmp_path_factory, "runtime", lambda root: write_runtime_folders(
        root, assets))


def tiny_params(assets: dict[str, Path]) -> dict:
    """The repo's params.yaml, pointed at the tiny assets, with short training."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dataset=str(assets["dataset"]), config=None)
    params["model"].update(checkpoint=str(assets["model"]), max_length=32)
    params["train"].update(TINY_TRAIN)
    params["evaluate"]["batch_size"] = 16
    params["export"]["batch_size"] = 16
    return params


@pytest.fixture
def project(tmp_path, assets, monkeypatch) -> Path:
    """A working copy of the pipeline in tmp_path (cwd set to it) with tiny params."""
    copy_project(tmp_path, "stages", "emotion", "behaviour", "dvc.yaml")
    write_params(tmp_path, tiny_params(assets))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_project(folder: Path, *names: str) -> None:
    """Copy files and folders of this repo into folder."""
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, folder / name)


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_param(folder: Path, section: str, key: str, value) -> None:
    """Change one key of folder/params.yaml."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params[section][key] = value
    write_params(folder, params)


# Fixtures of a run of their own (an experiment kept as a branch, DVC's queue, three trainings,
# the resume tests' first epoch and killed run): the tests that use one go to one
# pytest-xdist worker together (`--dist loadgroup`), so it is built once, not on each worker.
GROUPED_FIXTURES = ("experiment", "queued_experiments", "runs", "one_epoch", "killed")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook, which reads the group marks
def pytest_collection_modifyitems(items):
    for item in items:
        if PIPELINE_FIXTURES & set(item.fixturenames):
            item.add_marker("pipeline")
        for name in GROUPED_FIXTURES:
            if name in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=run_order)


def run_order(item) -> int:
    """Where a test goes in the order workers take tests (`make test` keeps it, with
    --no-loadscope-reorder): first the queue's group, whose worker builds the shared repo;
    meanwhile the other worker runs what needs no shared run; then the other groups and
    the longest tests, so no worker is left with a long one at the end; then the rest."""
    group = item.get_closest_marker("xdist_group")
    if group and group.args[0] == "queued_experiments":
        return 0
    if "dvc_repo" not in item.fixturenames:
        return 1
    return 2 if group or item.get_closest_marker("slow") else 3


def as_in_a_terminal() -> None:
    """preexec_fn for a process the test will Ctrl-C: its own session, and SIGINT's default
    action. A shell runs background commands with SIGINT ignored, children inherit that,
    and Python then never raises KeyboardInterrupt (so CI launched in the background would
    not be able to interrupt anything)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_stage(name: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m stages.<name>` as DVC would, in cwd; never raises."""
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **env})


def run_in_process(module: str, cwd: Path, argv: list[str] | None = None,
                   stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> [argv]` inside this process, in cwd: the same code path as the
    command but for the interpreter's start-up, and the same output files (a model trained
    here is saved with the bytes a process would write). Exit code and output come back as
    from subprocess.run (text); an exception other than SystemExit propagates (fails the
    test)."""
    if "tf_keras" in sys.modules:  # as in a new process: Keras's global state cleared, and
        # its layer names counted from 0 again (saved HDF5 files name the layers)
        sys.modules["tf_keras"].backend.clear_session()
    out, err = io.StringIO(), io.StringIO()
    saved = os.getcwd(), sys.argv, sys.stdin
    os.chdir(cwd)
    sys.argv = [module, *(argv or [])]
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (exit_.code is not None)
    finally:
        os.chdir(saved[0])
        sys.argv, sys.stdin = saved[1], saved[2]
    return subprocess.CompletedProcess([module, *(argv or [])], code, out.getvalue(),
                                       err.getvalue())


def run_stage_in_process(name: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m stages.<name>` in this process (see run_in_process)."""
    return run_in_process(f"stages.{name}", cwd)


def stage_ok(name: str, cwd: Path, in_process: bool = True) -> str:
    """Run a stage (in this process unless told otherwise); its stdout; fail on error."""
    result = run_stage_in_process(name, cwd) if in_process else run_stage(name, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def digest(*paths: Path, root: Path | None = None) -> dict[str, str]:
    """sha256 of every file under the given files/folders, by path (relative to root)."""
    import hashlib

    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return {str(f.relative_to(root) if root else f): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files}


def workspace_state(repo: Path, with_cache: bool = True) -> dict[str, str]:
    """sha256 of every file of the working tree (untracked and ignored ones too) and of the
    DVC cache, not of git's own files or DVC's scratch folder: what a failed command must
    leave as it was."""
    skip = (".git/", ".dvc/tmp/") + (() if with_cache else (".dvc/cache/",))
    return {path: sha for path, sha in digest(repo, root=repo).items()
            if not path.startswith(skip)}


def declared_outputs(root: Path) -> list[Path]:
    """Every output dvc.yaml declares, that exists."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
    paths = [out if isinstance(out, str) else next(iter(out))
             for stage in stages for out in stage["outs"]]
    return [root / path for path in paths if (root / path).exists()]


def outputs_digest(root: Path) -> dict[str, str]:
    """sha256 of every file of every declared output, by path relative to root."""
    return digest(*declared_outputs(root), root=root)


# --- A git + DVC repository holding the tiny project -----------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def run_command(cwd: Path, *args: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command with the test's Python (and its dvc) first on PATH, plus env; never
    raises."""
    return subprocess.run(args, cwd=cwd, env=command_env(env), text=True, capture_output=True)


def command_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the test's Python first on PATH, git's identity, and env."""
    return {**os.environ, **GIT_ENV, **(env or {}),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """run_command(), failing loudly; its stdout."""
    result = run_command(cwd, *args, env=env)
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def dvc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, env=env)


def fresh_clone(root: Path, folder: Path) -> Path:
    """A git clone of the repo: no DVC cache, so data and models are absent."""
    sh(folder.parent, "git", "clone", "-q", str(root), str(folder))
    if (root / "node_modules").exists():
        (folder / "node_modules").symlink_to((root / "node_modules").resolve())
    return folder


def copy_workspace(source: Path, folder: Path, with_repo: bool = False) -> Path:
    """A copy of a project's files and outputs (and, with_repo, its .git and DVC cache)."""
    ignore = None if with_repo else shutil.ignore_patterns(".git", ".dvc", "node_modules")
    shutil.copytree(source, folder, symlinks=True, ignore=ignore)
    return folder


def reproduced_repo(root: Path, assets: dict[str, Path]) -> str:
    """A git + DVC repo of the tiny project in root, reproduced and committed; the log."""
    copy_project(root, "stages", "emotion", "tools", "behaviour", "dvc.yaml", ".dvcignore",
                 ".gitignore")
    if (ROOT / "node_modules").exists():  # the Vega libraries for tools.review
        (root / "node_modules").symlink_to(ROOT / "node_modules")
    write_params(root, tiny_params(assets))
    sh(root, "git", "init", "-q")
    # A first commit, as any working repo has: DVCLive (the train stage's live metrics) reads
    # HEAD, and without one the stage trains without them (emotion/training/live.py).
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", "empty")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    first = dvc(root, "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return first


@pytest.fixture(scope="session")
def dvc_repo(tmp_path_factory, assets):
    """A git + DVC repo holding the tiny project, reproduced and committed; and the log of
    its `dvc repro`. Reproduced once per test run; each pytest-xdist worker has a copy of
    its own (tests change it and put it back)."""
    source, first = built_once(tmp_path_factory, "repo",
                               lambda root: (root, reproduced_repo(root, assets)))
    if not under_xdist():
        return source, first
    root = copy_workspace(source, tmp_path_factory.mktemp("repo") / "repo", with_repo=True)
    shutil.rmtree(root / ".dvc/tmp", ignore_errors=True)  # DVC's scratch space, not the repo
    return root, first


# The shared experiment: train params (epochs, learning rate, precision), a param read
# before training (model.max_length, so tokenize and all after it rerun), and the batch sizes
# of the export and onnx stages' checks (4: several batches, the last one partial). -S writes
# 3e-3 as `3e-03`, a string to plain PyYAML: the stages must read a number.
EXPERIMENT = ("train.epochs=3", "train.learning_rate=3e-3", "train.precision=mixed_bfloat16",
              "model.max_length=8", "export.batch_size=4", "onnx.batch_size=4")


def ran(log: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` log says it ran, in order."""
    return re.findall(r"Running stage '([\w-]+)'", log)


def dvc_status(root: Path) -> dict:
    """What `dvc status --json` prints in root, from the call the command makes (DVC's
    Repo.status) in this process: the same answer without a process start (~0.5 s)."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo() as repo:  # stages are named relative to the cwd
        return json.loads(json.dumps(repo.status()))


def stale(root: Path) -> set[str]:
    """The stages `dvc status` calls stale."""
    return set(dvc_status(root))


def dvc_checkout(root: Path) -> None:
    """`dvc checkout`: its call (DVC's Repo.checkout) in this process."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo() as repo:
        repo.checkout()


def restore(root: Path) -> None:
    """Back to the committed baseline: git-tracked files, then DVC-cached outputs."""
    sh(root, "git", "checkout", "--", ".")
    dvc_checkout(root)


@pytest.fixture(scope="session")
def experiment(dvc_repo) -> dict:
    """One `dvc exp run` on the shared repo (EXPERIMENT's params), named `three-epochs`, and
    kept as the git branch `experiment` (`dvc exp branch`), the second revision that reviews
    and diffs compare; the workspace is then put back on the baseline. Returns the baseline
    commit, the names, the run's log, what `dvc status` called stale after the run, and the
    digests of the declared outputs after the run and on the baseline."""
    root, _ = dvc_repo
    base = sh(root, "git", "rev-parse", "HEAD").strip()
    baseline = outputs_digest(root)
    options = [item for param in EXPERIMENT for item in ("-S", param)]
    try:
        log, live = run_watching_live(root, "exp", "run", *options, "-n", "three-epochs")
        outputs = outputs_digest(root)
        stale_after = stale(root)
        dvc(root, "exp", "branch", "three-epochs", "experiment")
    finally:
        restore(root)
    return {"base": base, "name": "three-epochs", "branch": "experiment", "log": log,
            "stale_after": stale_after, "outputs": outputs, "baseline": baseline,
            "live": live}


def live_steps(root: Path, name: str) -> list[int]:
    """The steps of one live metric's series (DVCLive's dvclive/plots/metrics/<name>.tsv)."""
    lines = (root / f"dvclive/plots/metrics/{name}.tsv").read_text().splitlines()
    column = lines[0].split("\t").index("step")
    return [int(line.split("\t")[column]) for line in lines[1:]]


def live_step(workspace: Path) -> int | None:
    """The step of a workspace's live metrics (dvclive/metrics.json); None if there are none
    (yet, or half-written)."""
    try:
        return json.loads((workspace / "dvclive/metrics.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def shown_while_held(root: Path, held: dict[int, dict]) -> list:
    """`dvc exp show --json` in root while the processes `held` are stopped (SIGSTOP)."""
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    try:
        return json.loads(dvc(root, "exp", "show", "--json"))
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)


def run_watching_live(root: Path, *args: str) -> tuple[str, list | None]:
    """`dvc <args>` in root, and what `dvc exp show --json` (a second process) showed while
    the train stage was held (SIGSTOP) just after it logged its first epoch's live metrics
    (dvclive/metrics.json at step 1); None if it never did."""
    live = root / "dvclive/metrics.json"
    before = live.read_bytes() if live.exists() else None
    process = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=command_env())
    seen = None
    while process.poll() is None and seen is None:
        if live_step(root) == 1 and live.read_bytes() != before:
            seen = shown_while_held(root, trainers(processes_under(root)))
        time.sleep(0.02)
    log = process.communicate(timeout=900)[0]
    if process.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{log}")
    return log, seen


def ci_review(root: Path, base: str, out: Path) -> subprocess.CompletedProcess:
    """`make ci-review` (tools.review --ci) of base against root's workspace, in this process
    (its dvc and git commands are processes); never raises."""
    return run_in_process("tools.review", root, ["--base", base, "--out", str(out), "--ci"])


# --- DVC's experiment queue -------------------------------------------------------------

# What docs/experiments.md tells users to set on `dvc queue start`: one TF thread pool each.
THREAD_CAP = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
QUEUE_TIMEOUT = 600.0


def processes_under(root: Path) -> dict[int, dict]:
    """Running processes whose working folder is root or below it: cwd, argv, environment
    and parent's pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            if not (cwd == str(root) or cwd.startswith(f"{root}/")):
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            environ = dict(item.split("=", 1) for item in
                           (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                           if "=" in item)
            # (the command's name, in parentheses, may hold spaces: the fields after it)
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # ended meanwhile
            continue
        found[int(entry.name)] = {"cwd": cwd, "argv": argv, "environ": environ,
                                  "parent": parent}
    return found


def trainers(processes: dict[int, dict]) -> dict[int, dict]:
    """The train stage's processes among `processes` (of processes_under): not counting a
    child one of them has just forked, which has its argv until it execs another program."""
    return {pid: info for pid, info in processes.items() if is_training(info["argv"])
            and not is_training(processes.get(info["parent"], {}).get("argv", []))}


def is_training(argv: list[str]) -> bool:
    """The train stage's Python process (`python -m stages.train`)."""
    return any(argv[i:i + 2] == ["-m", "stages.train"] for i in range(len(argv)))


@pytest.fixture(scope="session")
def queued_experiments(dvc_repo, tmp_path_factory) -> dict:
    """A copy of the shared repo where DVC's queue ran three experiments with two workers,
    as docs/experiments.md runs seeds: seeds 1 and 2 (up to evaluate), and `broken`, whose
    bad param fails the train stage. `dvc queue start` gets THREAD_CAP in its environment.
    Returns the repo, the most training processes seen at once, every training process seen
    (pid: cwd, argv, environ) and the final `dvc queue status`."""
    source, _ = dvc_repo
    root = copy_workspace(source, tmp_path_factory.mktemp("queue") / "repo", with_repo=True)
    shutil.rmtree(root / ".dvc/tmp", ignore_errors=True)  # no queue state of the source
    dvc(root, "exp", "remove", "--all-commits")
    workspace_before = workspace_state(root, with_cache=False)
    for name, param in (("seed-1", "train.seed=1"), ("seed-2", "train.seed=2"),
                        ("broken", "train.precision=bogus")):
        dvc(root, "exp", "run", "evaluate", "--queue", "-S", param, "-n", name)
    # The workers outlive `dvc queue start` and inherit its stdout: a file, not a pipe that
    # would keep this call waiting until they end.
    with open(root.parent / "queue-start.log", "w") as log:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "2"], cwd=root,
                       env=command_env(THREAD_CAP), stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    seen, most_at_once, seen_any, live = {}, 0, False, None
    deadline = time.monotonic() + QUEUE_TIMEOUT
    idle_since, stopped = None, False
    while time.monotonic() < deadline:  # until the workers (cwd: the repo) are gone
        running = processes_under(root)
        seen_any = seen_any or bool(running)
        now = trainers(running)
        seen.update(now)
        most_at_once = max(most_at_once, len(now))
        if live is None and any(live_step(Path(info["cwd"])) == 1 for info in now.values()):
            live = shown_while_held(root, now)  # a worker's first epoch is logged live
        if seen_any and not running:
            break
        # DVC's temporary workers stop by themselves once the queue is empty, but now and
        # then one misses the shutdown broadcast (dvc-task's filesystem broker; seen once in
        # a fresh-clone CI run: it idled on, deaf to `dvc queue stop` too). With every task
        # done and no trainer for 15 s, such a worker is stopped with SIGTERM (celery's warm
        # shutdown), as its user would stop it.
        idle_since = (idle_since or time.monotonic()) if seen_any and not now else None
        if (not stopped and idle_since and time.monotonic() - idle_since > 15
                and not re.search(r"\b(Queued|Running)\b", dvc(root, "queue", "status"))):
            for pid, info in running.items():
                if "queue-worker" in info["argv"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            stopped = True
        time.sleep(0.2)
    status = dvc(root, "queue", "status")
    assert seen_any and not processes_under(root), f"queue still running:\n{status}"
    return {"root": root, "most_at_once": most_at_once, "trainers": seen,
            "status": status, "workspace_before": workspace_before, "live": live}


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A real S3 server on free loopback ports; stopped afterwards, leaving no process.
    This test process has no AWS credentials of its own (only what a test passes)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    from seaweedfs import S3Server

    server = S3Server(tmp_path / "s3").start()
    yield server
    server.kill()  # its data is thrown away: no need to wait for a clean shutdown (~2 s)
    with pytest.raises(ProcessLookupError):  # the server's whole process group is gone
        os.killpg(server.process.pid, 0)

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
import os
import random
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # stages and tools are run in-process from any cwd
    sys.path.insert(0, str(ROOT))
# Tests that run DVC, a pipeline stage or a training step: `make test-quick` leaves them out.
PIPELINE_FIXTURES = {"dvc_repo", "project", "trained", "prepared", "tokenized", "faster_lr",
                     "failing_repo"}
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
# Short runs on 2 cores: a few epochs of a 2-layer, 32-wide BERT on ~100 texts.
TINY_TRAIN = {"seed": 7, "learning_rate": 1.0e-3, "epochs": 2, "batch_size": 8,
              "bucket_lengths": [8, 16, 32], "eval_batch_size": 16}


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


def write_tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a WordPiece tokenizer on our words."""
    from transformers import BertConfig, BertTokenizerFast, TFBertModel

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(set(FILLER) | {w for cues in CUE_WORDS.values() for w in cues})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(specials + words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(specials) + len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Shared read-only inputs: the synthetic dataset and the tiny BERT."""
    root = tmp_path_factory.mktemp("assets")
    return {"dataset": write_dataset(root / "emotion"), "model": write_tiny_bert(root / "bert")}


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
    copy_project(tmp_path, "stages", "emotion", "dvc.yaml")
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


def pytest_collection_modifyitems(items):
    for item in items:
        if PIPELINE_FIXTURES & set(item.fixturenames):
            item.add_marker("pipeline")


def run_stage(name: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m stages.<name>` as DVC would, in cwd; never raises."""
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **env})


def run_in_process(module: str, cwd: Path, argv: list[str] | None = None,
                   stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> [argv]` inside this process, in cwd: the same code path as the
    command but for the interpreter's start-up. Exit code and output come back as from
    subprocess.run (text); an exception other than SystemExit propagates (fails the test)."""
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


def sh(cwd: Path, *args: str) -> str:
    """Run a command with the test's Python (and its dvc) first on PATH; fail loudly."""
    env = {**os.environ, **GIT_ENV,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True)
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


def copy_workspace(source: Path, folder: Path, with_repo: bool = False) -> Path:
    """A copy of a project's files and outputs (and, with_repo, its .git and DVC cache)."""
    ignore = None if with_repo else shutil.ignore_patterns(".git", ".dvc", "node_modules")
    shutil.copytree(source, folder, symlinks=True, ignore=ignore)
    return folder


@pytest.fixture(scope="session")
def dvc_repo(tmp_path_factory, assets):
    """A git + DVC repo holding the tiny project, reproduced once and committed."""
    root = tmp_path_factory.mktemp("repo")
    copy_project(root, "stages", "emotion", "tools", "dvc.yaml", ".dvcignore", ".gitignore")
    if (ROOT / "node_modules").exists():  # the Vega libraries for tools.review
        (root / "node_modules").symlink_to(ROOT / "node_modules")
    write_params(root, tiny_params(assets))
    sh(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    first = dvc(root, "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return root, first


@pytest.fixture(scope="session")
def faster_lr(dvc_repo) -> dict:
    """A branch `faster-lr` of the shared repo: train.learning_rate 3e-3, reproduced by
    `dvc repro` and committed; the repo is left back on its baseline. Returns the baseline
    commit, what `dvc status` called stale before and after the repro, and the repro's log."""
    root, _ = dvc_repo
    base = sh(root, "git", "rev-parse", "HEAD").strip()
    branch = sh(root, "git", "branch", "--show-current").strip()
    sh(root, "git", "checkout", "-q", "-b", "faster-lr")
    try:
        set_param(root, "train", "learning_rate", 3.0e-3)
        stale = set(yaml.safe_load(dvc(root, "status", "--json")))
        log = dvc(root, "repro")
        stale_after = set(yaml.safe_load(dvc(root, "status", "--json")))
        sh(root, "git", "commit", "-qam", "faster learning rate")
    finally:
        sh(root, "git", "checkout", "-q", "-f", branch)
        dvc(root, "checkout", "-q")
    return {"base": base, "branch": "faster-lr", "stale": stale, "log": log,
            "stale_after": stale_after}

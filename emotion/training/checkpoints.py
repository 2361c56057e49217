"""The train stage's resume state in models/.checkpoints/: which run it belongs to (the run
fingerprint), saving it after every epoch as one unit, restoring it, and the best epoch's
weights.

After epoch N, save_checkpoint writes a new folder epoch-N/ (model, optimizer and dropout
RNG state; and the model's weights if N is the best epoch so far), moved into place whole;
then replaces state.json, the history and the run fingerprint (the history gives the last
and the best epoch, so the folders to resume from); then deletes the other epoch folders.
state.json is the one switch: a kill at any instant leaves it pointing at complete folders of
one consistent epoch (the staging folder or a newer epoch-N/ of an interrupted save are ignored,
and replaced or cleared later). It holds the sha256 of every file it points at, checked before
a resume: a damaged or missing file, or a damaged state.json, is one line, and training starts
afresh with the damaged folder kept aside (DAMAGED_DIR). Only the last epoch's optimizer state
is kept. A rerun with the same fingerprint (which counts the replicas and hosts too) continues
from the last completed epoch and ends with the same weights as an uninterrupted run; anything
else starts afresh. The folder is scratch space, ignored
by git and DVC, not a DVC output: an uncached `persist` output cannot be restored by `dvc
checkout`, so after any experiment `dvc status` would call train stale for good.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from emotion.errors import PipelineError, first_line
from emotion.files import atomic_output, remove_dead_staging
from emotion.model import checkpoint_identity
from emotion.paths import CHECKPOINT_DIR

# The libraries whose numerics the weights depend on (part of the run fingerprint).
FRAMEWORKS = ("tensorflow", "tf-keras", "transformers")
STATE_FILE = CHECKPOINT_DIR / "state.json"
DAMAGED_DIR = CHECKPOINT_DIR.with_name(".checkpoints-damaged")  # the last damaged one
WEIGHTS_FILE = "weights.h5"  # in the best epoch's folder
# The fault hook of the kill-window tests: "<point>@<epoch>" SIGKILLs this process at that
# point of that epoch's save_checkpoint (KILL_POINTS, in order). Unset: no effect.
KILL_VARIABLE = "EMOTION_CHECKPOINT_KILL"
KILL_POINTS = ("epoch-staged", "epoch-written", "state-written")


def run_fingerprint(settings: dict, topology: dict[str, int]) -> str:
    """Everything a checkpoint's weights depend on: the params; every file the train stage
    depends on in dvc.yaml (its code and the tokenized data); the exact pretrained weights; the
    framework versions; and where it trains (`topology`: replicas and hosts, which split the
    batches and the dropout masks). With a constant learning rate nothing depends on the number
    of epochs, so a longer run can continue a shorter one; a linear schedule depends on it."""
    relevant = {key: value for key, value in settings.items()
                if key != "epochs" or settings["lr_schedule"] != "constant"}
    relevant["topology"] = topology
    relevant["pretrained"] = checkpoint_identity(settings["checkpoint"], settings["revision"])
    relevant["versions"] = {name: version(name) for name in FRAMEWORKS}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    for path in train_dependencies():
        files = [path] if path.is_file() else sorted(  # as DVC hashes a folder dep
            f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        for file in files:
            digest.update(str(file).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def train_dependencies() -> list[Path]:
    """The deps of the train stage in dvc.yaml."""
    try:
        deps = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]["train"]["deps"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise PipelineError(f"dvc.yaml: cannot read the train stage's deps ({error})") from None
    missing = [dep for dep in deps if not Path(dep).exists()]
    if missing:
        raise PipelineError(f"dvc.yaml: train dependency {missing[0]} not found")
    return [Path(dep) for dep in deps]


def epoch_dir(epoch: int) -> Path:
    return CHECKPOINT_DIR / f"epoch-{epoch}"


def best_weights_file(epoch: int) -> Path:
    return epoch_dir(epoch) / WEIGHTS_FILE


def resume(checkpoint: Any, fingerprint: str, epochs: int) -> list[dict]:
    """Restore the last completed epoch into `checkpoint` (a tf.train.Checkpoint) if
    models/.checkpoints/ holds this exact run (same fingerprint, no more epochs than asked
    for, every file as saved) and return its history; else clear the folder (or, damaged,
    keep it aside) and return []."""
    import tensorflow as tf

    if not STATE_FILE.exists():
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)
        return []
    try:
        state = read_state()
    except ValueError as damage:
        return set_aside(f"{STATE_FILE} is damaged ({damage})")
    history = state["history"]
    if state["fingerprint"] != fingerprint or len(history) > epochs or not history:
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)
        return []
    for name, expected in state["files"].items():
        path = CHECKPOINT_DIR / name
        if not path.is_file():
            return set_aside(f"{path} is missing though {STATE_FILE} says {len(history)} "
                             "epochs are done")
        if sha256(path) != expected:
            return set_aside(f"{path} is damaged (its sha256 differs from the one saved)")
    last = epoch_dir(len(history))
    try:
        checkpoint.read(str(last / "ckpt")).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise PipelineError(f"{last / 'ckpt'} cannot be restored ({first_line(error)}): "
                            f"delete {CHECKPOINT_DIR} to train afresh") from None
    print(f"resuming after epoch {len(history)} from {CHECKPOINT_DIR}")
    return history


def save_checkpoint(checkpoint: Any, model: Any, history: list[dict], fingerprint: str) -> None:
    """Save the resumable state after the last epoch of `history` as one unit (see the
    module's docstring): its folder, then state.json naming it, then the older folders go."""
    epoch, best = history[-1]["epoch"], best_epoch(history)
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    with atomic_output(epoch_dir(epoch)) as folder:
        checkpoint.write(str(folder / "ckpt"))
        if best == epoch:
            model.save_weights(str(folder / WEIGHTS_FILE))
        kill_point("epoch-staged", epoch)
    kill_point("epoch-written", epoch)
    kept = [*sorted(epoch_dir(epoch).rglob("*")), best_weights_file(best)]
    files = {str(path.relative_to(CHECKPOINT_DIR)): sha256(path)
             for path in dict.fromkeys(kept) if path.is_file()}
    with atomic_output(STATE_FILE) as out:
        out.write_text(json.dumps({"fingerprint": fingerprint, "history": history,
                                   "files": files}, indent=2))
    kill_point("state-written", epoch)
    for path in CHECKPOINT_DIR.glob("epoch-*"):  # only the last epoch's state is resumed
        if path not in (epoch_dir(epoch), epoch_dir(best)):
            shutil.rmtree(path)
    if best != epoch:
        for path in epoch_dir(best).glob("ckpt*"):
            path.unlink()
    for number in range(1, epoch + 1):  # staging folders of earlier saves that were killed
        remove_dead_staging(epoch_dir(number))


def read_state() -> dict:
    """state.json, checked: a ValueError says what is wrong with it."""
    try:
        state = json.loads(STATE_FILE.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(first_line(error)) from None
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint"), str):
        raise ValueError("no fingerprint")
    history, files = state.get("history"), state.get("files")
    if not isinstance(history, list) or not all(
            isinstance(row, dict) and row.get("epoch") == number
            and isinstance(row.get("val_loss"), int | float)
            for number, row in enumerate(history, start=1)):
        raise ValueError("its history is not one row per epoch with a val_loss")
    if not isinstance(files, dict) or not all(
            isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()):
        raise ValueError("no checksums of its files")
    return state


def set_aside(problem: str) -> list[dict]:
    """Keep a damaged checkpoint folder as DAMAGED_DIR (replacing an earlier one), say so in
    one line, and train afresh (no history)."""
    shutil.rmtree(DAMAGED_DIR, ignore_errors=True)
    os.replace(CHECKPOINT_DIR, DAMAGED_DIR)
    print(f"warning: {problem}: training afresh (the folder is kept as {DAMAGED_DIR})",
          flush=True)
    return []


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def kill_point(point: str, epoch: int) -> None:
    """The kill-window tests' fault hook (KILL_VARIABLE): SIGKILL this process here."""
    if os.environ.get(KILL_VARIABLE) == f"{point}@{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def best_epoch(history: list[dict]) -> int:
    """The epoch with the lowest validation loss (the earliest on a tie)."""
    return min(history, key=lambda row: (row["val_loss"], row["epoch"]))["epoch"]

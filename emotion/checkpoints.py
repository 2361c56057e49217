"""The train stage's resume state in models/.checkpoints/: which run it belongs to (the run
fingerprint), saving it after every epoch, restoring it, and the best epoch's weights.

After every epoch the model, optimizer and dropout RNG state go to models/.checkpoints/last,
the weights of the best epoch so far to best-epoch-N.weights.h5, and the history with the
run fingerprint to state.json (last, so a kill at any point leaves a consistent earlier
state). A rerun with the same fingerprint continues from the last completed epoch and ends
with the same weights as an uninterrupted run; anything else starts afresh. The folder is
scratch space, ignored by git and DVC, not a DVC output: an uncached `persist` output cannot
be restored by `dvc checkout`, so after any experiment `dvc status` would call train stale
for good.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from emotion.errors import PipelineError, first_line
from emotion.files import CHECKPOINT_DIR, atomic_output
from emotion.model import checkpoint_identity

# The libraries whose numerics the weights depend on (part of the run fingerprint).
FRAMEWORKS = ("tensorflow", "tf-keras", "transformers")
STATE_FILE = CHECKPOINT_DIR / "state.json"
LAST_DIR = CHECKPOINT_DIR / "last"


def run_fingerprint(settings: dict) -> str:
    """Everything a checkpoint's weights depend on: the params; every file the train stage
    depends on in dvc.yaml (its code and the tokenized data); the exact pretrained weights; and
    the framework versions. With a constant learning rate nothing depends on the number of
    epochs, so a longer run can continue a shorter one; a linear schedule depends on it."""
    relevant = {key: value for key, value in settings.items()
                if key != "epochs" or settings["lr_schedule"] != "constant"}
    relevant["pretrained"] = checkpoint_identity(settings["checkpoint"], settings["revision"])
    relevant["versions"] = {name: version(name) for name in FRAMEWORKS}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    for path in train_dependencies():
        files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
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


def resume(checkpoint: Any, fingerprint: str, epochs: int) -> list[dict]:
    """Restore the last completed epoch into `checkpoint` (a tf.train.Checkpoint) if
    models/.checkpoints/ holds this exact run (same fingerprint, no more epochs than asked
    for) and return its history; else clear the folder and return []."""
    import tensorflow as tf

    try:
        state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
        history = state.get("history", [])
    except (json.JSONDecodeError, AttributeError):
        raise PipelineError(f"{STATE_FILE} is damaged: delete {CHECKPOINT_DIR} to train afresh"
                            ) from None
    if state.get("fingerprint") != fingerprint or len(history) > epochs:
        shutil.rmtree(CHECKPOINT_DIR, ignore_errors=True)
        return []
    if not LAST_DIR.is_dir():
        raise PipelineError(f"{LAST_DIR} is missing though {STATE_FILE} says {len(history)} "
                            f"epochs are done: delete {CHECKPOINT_DIR} to train afresh")
    try:
        checkpoint.read(str(LAST_DIR / "ckpt")).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise PipelineError(f"{LAST_DIR / 'ckpt'} cannot be restored ({first_line(error)}): "
                            f"delete {CHECKPOINT_DIR} to train afresh") from None
    print(f"resuming after epoch {len(history)} from {CHECKPOINT_DIR}")
    return history


def save_checkpoint(checkpoint: Any, model: Any, history: list[dict], fingerprint: str) -> None:
    """Save the resumable state after an epoch, and the weights of the best epoch so far.

    Each file is written to a temp name and renamed, and state.json (which names the best
    epoch) goes last, so a kill at any point leaves a consistent earlier state."""
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    best = best_epoch(history)
    if best == history[-1]["epoch"]:
        with atomic_output(best_weights_file(best)) as out:
            model.save_weights(str(out))
    with atomic_output(LAST_DIR) as out:
        checkpoint.write(str(out / "ckpt"))
    with atomic_output(STATE_FILE) as out:
        out.write_text(json.dumps({"fingerprint": fingerprint, "history": history}, indent=2))
    for stale in CHECKPOINT_DIR.glob("best-epoch-*.weights.h5"):
        if stale != best_weights_file(best):
            stale.unlink()


def best_epoch(history: list[dict]) -> int:
    """The epoch with the lowest validation loss (the earliest on a tie)."""
    return min(history, key=lambda row: (row["val_loss"], row["epoch"]))["epoch"]


def best_weights_file(epoch: int) -> Path:
    return CHECKPOINT_DIR / f"best-epoch-{epoch}.weights.h5"

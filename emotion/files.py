"""Where the pipeline keeps its files, and writing them all-or-nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SPLITS = ("train", "validation", "test")
RAW_DIR = Path("data/raw")
TOKENIZED_DIR = Path("data/tokenized")
MODEL_DIR = Path("models/emotion")
SERVING_DIR = Path("models/serving")
# Resume state of the train stage: scratch space, git- and DVC-ignored, not a DVC output.
CHECKPOINT_DIR = Path("models/.checkpoints")
# Staging folders are named .<name>.staging-<pid>-<random> beside their target; .gitignore and
# .dvcignore ignore the pattern, and a later write removes those of processes no longer alive.
STAGING_MARK = ".staging-"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write a file or folder into; on success move it
    into place (replacing what was there), on failure delete it and keep the old output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{STAGING_MARK}{os.getpid()}-",
                                    dir=path.parent))
    target = staging / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written to {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_dead_staging(path: Path) -> list[Path]:
    """Delete the staging folders of `path` left by processes that no longer run (killed
    mid-write); return them."""
    removed = []
    for staging in path.parent.glob(f".{path.name}{STAGING_MARK}*"):
        pid = staging.name[len(f".{path.name}{STAGING_MARK}"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG with no timestamp metadata (equal inputs, equal bytes)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)

"""Writing files all-or-nothing: a stage's outputs, paths a user named, figures; and reading
the JSON files the pipeline wrote."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emotion.errors import PipelineError, UsageError, first_line

# Staging folders are named .<name>.staging-<pid>-<random> beside their target; .gitignore and
# .dvcignore ignore the pattern, and a later write removes those of processes no longer alive.
STAGING_MARK = ".staging-"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write a file or folder into; on success move it
    into place (replacing what was there), on failure delete it and keep the old output."""
    with atomic_outputs(path) as (target,):
        yield target


@contextmanager
def atomic_outputs(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """atomic_output for several outputs written together (a stage's model, metrics and
    plots): each is staged beside its target, and only when the block succeeds are they all
    moved into place, so a failure or a kill midway leaves every previous output as it was."""
    paths = [Path(path) for path in paths]
    stagings = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_dead_staging(path)
            stagings.append(Path(tempfile.mkdtemp(
                prefix=f".{path.name}{STAGING_MARK}{os.getpid()}-", dir=path.parent)))
        targets = tuple(staging / path.name for staging, path in zip(stagings, paths))
        yield targets
        for path, target in zip(paths, targets):
            if not target.exists():
                raise RuntimeError(f"nothing was written to {path}")
        for path, target, staging in zip(paths, targets, stagings):
            if path.is_dir() and not path.is_symlink():  # a folder cannot be replaced in one
                os.replace(path, staging / "previous")  # step: move it aside, deleted below
            os.replace(target, path)
    finally:
        for staging in stagings:
            shutil.rmtree(staging, ignore_errors=True)


def user_file(path: str | Path) -> Path:
    """Where to write a file a user named (emotion-predict -o, tools.seeds --out): the path,
    or through a symlink its target, if nothing or a regular file is there; anything else (a
    folder, a device, a symlink to a folder or to nothing) is a UsageError naming it."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return path
    if not path.is_file():
        raise UsageError(f"{path}: exists and is not a regular file; it is left as it is "
                         "(name a file to write)")
    return path.resolve()


@contextmanager
def user_file_output(path: str | Path) -> Iterator[Path]:
    """atomic_output for a file a user named, checked by user_file()."""
    with atomic_output(user_file(path)) as out:
        yield out


def user_folder(path: str | Path, marker: str) -> Path:
    """Check a folder a user named for a command that writes it whole (tools.review --out):
    nothing may be there but a folder holding `marker`, the file the command leaves in every
    folder it writes; anything else is a UsageError naming it."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not (path.is_dir() and (path / marker).is_file())):
        raise UsageError(f"{path}: exists and is not a folder this command wrote (no {marker} "
                         "in it); it is left as it is (name a new folder, or remove it first)")
    return path


@contextmanager
def user_folder_output(path: str | Path, marker: str) -> Iterator[Path]:
    """atomic_output for a folder a user named, checked by user_folder(); `marker` is left in
    it."""
    with atomic_output(user_folder(path, marker)) as out:
        yield out
        (out / marker).write_text("written by this command; it may replace this folder\n")


def read_json(path: str | Path, remedy: str) -> Any:
    """A JSON file the pipeline wrote; a missing or damaged one is a PipelineError naming it
    and `remedy` (what rebuilds it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: cannot read it ({first_line(error)}): {remedy}") from None


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

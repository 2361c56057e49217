"""Writing files all-or-nothing: a stage's outputs, paths a user named, figures; and reading
the JSON files the pipeline wrote."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from emotion.errors import PipelineError, UsageError, first_line

# Staging folders and files are named .<name>.staging-<pid>-<random> beside their target, and
# commit journals .commit.staging-<pid>-<random>.json; .gitignore and .dvcignore ignore the
# pattern, and a later write of the same path finishes or removes those of dead processes.
STAGING_MARK = ".staging-"
JOURNAL_PREFIX = ".commit" + STAGING_MARK
# The fault hook of the kill-window tests: "<point>" (or "<point>@<name>", for the write whose
# first output is named <name>) SIGKILLs this process at that point of a write: "staged"
# (everything new written and fsynced), "journaled" (the commit journal written), "replaced-<n>"
# (the n-th output in place) and "committed" (all in place, the journal not yet removed).
KILL_VARIABLE = "EMOTION_WRITE_KILL"
_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths atomically (Linux 3.15+)
_AT_FDCWD = -100


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write a file or folder into; on success put it
    in place of what was there in one step, on failure delete it and keep the old output."""
    with atomic_outputs(path) as (target,):
        yield target


@contextmanager
def atomic_outputs(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """atomic_output for several outputs written together (a stage's model, metrics and
    plots), all or none. The protocol: each new output is staged beside its target and
    fsynced; a commit journal naming them all is written (fsynced) beside each target; each is
    swapped with its target in one step (renameat2 RENAME_EXCHANGE, so a path never lacks a
    complete old or new; a rename for a new path); then the journal and the old outputs go. A
    failure before the journal keeps every old output; a kill after it is finished by the
    next write of any of these paths (recover(), which rolls the journal forward), so every
    path ends all old or all new."""
    paths = [Path(path) for path in paths]
    stagings = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            recover(path)
            stagings.append(Path(tempfile.mkdtemp(
                prefix=f".{path.name}{STAGING_MARK}{os.getpid()}-", dir=path.parent)))
        targets = tuple(staging / path.name for staging, path in zip(stagings, paths))
        yield targets
        for path, target in zip(paths, targets):
            if not target.exists():
                raise RuntimeError(f"nothing was written to {path}")
            fsync_tree(target)
        commit(list(zip(targets, paths)))
    finally:
        for staging in stagings:
            shutil.rmtree(staging, ignore_errors=True)


def commit(moves: list[tuple[Path, Path]]) -> None:
    """Put each staged output in place of its target, journaled (atomic_outputs)."""
    name = moves[0][1].name
    kill_point("staged", name)
    journals = _write_journals(moves)
    kill_point("journaled", name)
    for number, (staged, path) in enumerate(moves, start=1):
        _swap_in(staged, path)
        kill_point(f"replaced-{number}", name)
    kill_point("committed", name)
    for journal in journals:
        journal.unlink()
        fsync_folder(journal.parent)


def _write_journals(moves: list[tuple[Path, Path]]) -> list[Path]:
    """The commit journal, fsynced, in each target's folder: what recover() rolls forward."""
    entries = [(staged, path, _identity(staged)) for staged, path in moves]
    journal_name = f"{JOURNAL_PREFIX}{os.getpid()}-{os.urandom(4).hex()}.json"
    journals = []
    for folder in dict.fromkeys(path.parent.resolve() for _, path in moves):
        journal = folder / journal_name
        record = [{"staged": os.path.relpath(staged.resolve(), folder),
                   "path": os.path.relpath(path.parent.resolve() / path.name, folder),
                   "identity": identity} for staged, path, identity in entries]
        temporary = folder / f"{journal_name}.tmp"
        with temporary.open("w") as stream:
            json.dump(record, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, journal)
        fsync_folder(folder)
        journals.append(journal)
    return journals


def _identity(path: Path) -> list[int]:
    """What tells a staged output from any other file: its device and inode, kept by
    renames."""
    status = path.lstat()
    return [status.st_dev, status.st_ino]


def _swap_in(staged: Path, path: Path) -> None:
    """Put `staged` at `path`: swapped with what is there in one step (the old output is
    left at `staged`), or renamed onto it; where the file system cannot swap, an old folder is
    moved into the staging folder first (a window recover() closes)."""
    if path.exists() or path.is_symlink():
        if _exchange(staged, path):
            fsync_folder(path.parent)
            return
        if path.is_dir() and not path.is_symlink():
            os.replace(path, staged.parent / "previous")
    os.replace(staged, path)
    fsync_folder(path.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the system or the
    file system cannot."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    result = libc.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                            _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def recover(path: Path) -> None:
    """Finish the writes of dead processes that committed `path`'s folder (roll their journal
    forward), then delete the staging folders of dead writes of `path`."""
    for journal in sorted(path.parent.glob(f"{JOURNAL_PREFIX}*.json")):
        pid = journal.name[len(JOURNAL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _roll_forward(journal)
    remove_dead_staging(path)


def _roll_forward(journal: Path) -> None:
    try:
        entries = json.loads(journal.read_text())
    except (OSError, ValueError):  # removed meanwhile by another recover()
        return
    folder = journal.parent
    for entry in entries:
        staged, path = folder / entry["staged"], folder / entry["path"]
        if (path.exists() or path.is_symlink()) and _identity(path) == entry["identity"]:
            continue  # already in place
        if not (staged.exists() and _identity(staged) == entry["identity"]):
            raise PipelineError(f"{path}: an interrupted write cannot be finished ({staged} "
                                f"is gone); see {journal}")
        _swap_in(staged, path)
    for entry in entries:
        shutil.rmtree((folder / entry["staged"]).parent, ignore_errors=True)
    for parent in dict.fromkeys((folder / entry["path"]).parent for entry in entries):
        (parent / journal.name).unlink(missing_ok=True)
        fsync_folder(parent)


def fsync_tree(path: Path) -> None:
    """fsync a file, or a folder's files and folders, so that a rename after it cannot land
    before the data after a power loss."""
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                fsync_file(Path(root, name))
            fsync_folder(Path(root))
    else:
        fsync_file(path)


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def kill_point(point: str, name: str) -> None:
    """The kill-window tests' fault hook (KILL_VARIABLE): SIGKILL this process here."""
    if os.environ.get(KILL_VARIABLE) in (point, f"{point}@{name}"):
        os.kill(os.getpid(), signal.SIGKILL)


def user_file(path: str | Path, reads: Path | None = None) -> Path:
    """Where to write a file a user named (emotion-predict -o, tools.seeds --out): the path,
    or through a symlink its target, if nothing or a regular file is there and its folder
    exists; anything else (a folder, a device, a symlink to a folder or to nothing, the file
    `reads` names, a missing folder) is a UsageError naming it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"{path}: its folder {path.parent} does not exist (create it first)")
    if not (path.exists() or path.is_symlink()):
        return path
    if not path.is_file():
        raise UsageError(f"{path}: exists and is not a regular file; it is left as it is "
                         "(name a file to write)")
    if reads is not None and reads.exists() and os.path.samefile(path, reads):
        raise UsageError(f"{path}: is also the input; it is left as it is (name another "
                         "file to write)")
    return path.resolve()


@contextmanager
def user_file_output(path: str | Path, reads: Path | None = None) -> Iterator[Path]:
    """Yield a temporary file beside a file a user named (checked by user_file()) to write;
    on success it replaces the file in one rename, with the old file's permissions (and
    owner, where allowed), fsynced; a folder that appeared there meanwhile is a UsageError
    and stays as it is. On failure the temporary file goes and the old file stays."""
    path = user_file(path, reads)
    recover(path)
    staged = path.parent / f".{path.name}{STAGING_MARK}{os.getpid()}-{os.urandom(4).hex()}"
    # Created as any new file is (0666 less the umask, applied by the kernel), not
    # mkstemp's 0600; an existing file's mode is copied onto it below.
    os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield staged
        fsync_file(staged)
        if path.exists():
            status = path.stat()
            os.chmod(staged, stat.S_IMODE(status.st_mode))
            with suppress(PermissionError):
                os.chown(staged, status.st_uid, status.st_gid)
        kill_point("staged", path.name)
        try:
            os.replace(staged, path)
        except IsADirectoryError:
            raise UsageError(f"{path}: a folder appeared there while this command ran; it is "
                             "left as it is") from None
        kill_point("replaced-1", path.name)
        fsync_folder(path.parent)
    finally:
        staged.unlink(missing_ok=True)


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
    """Delete the staging folders and files of `path` left by processes that no longer run
    (killed mid-write); return them."""
    removed = []
    for staging in path.parent.glob(f".{path.name}{STAGING_MARK}*"):
        pid = staging.name[len(f".{path.name}{STAGING_MARK}"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if staging.is_dir() and not staging.is_symlink():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                staging.unlink(missing_ok=True)
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

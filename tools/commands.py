"""Running git and dvc from the tools: their output, or a one-line PipelineError."""

import subprocess
import sys

from emotion.errors import PipelineError


def dvc(*args: str) -> str:
    """Run a dvc command (the one installed beside this Python); one-line error on failure."""
    return run([sys.executable, "-m", "dvc", *args], f"dvc {' '.join(args[:2])}")


def git(*args: str) -> str:
    return run(["git", *args], f"git {args[0]}")


def run(command: list[str], name: str) -> str:
    result = subprocess.run(command, text=True, capture_output=True)
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()
        raise PipelineError(f"{name}: {lines[-1]}")
    return result.stdout

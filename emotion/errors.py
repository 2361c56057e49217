"""Errors a user can fix, reported as one line and a non-zero exit, never a stack trace."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's params, data, model or input, told in one line."""

    exit_code = 1


class UsageError(PipelineError):
    """A command given what it cannot use, e.g. an output path it must not replace (exit code
    2, as for argparse's own usage errors)."""

    exit_code = 2


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (library errors can run long)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def exit_on_error(main: Callable[[], None]) -> None:
    """Run main(); turn a PipelineError into `error: <message>` on stderr and its exit code
    (1; 2 for a UsageError)."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)

"""DVC's push, pull and cloud status, with a remote problem told in one line.

    python -m tools.remote push|pull|status [-r NAME] [dvc options...]   (make push / make pull)

Before the dvc command runs, the remote (the default one, or -r NAME) is asked whether its
server answers, the credentials are accepted and the bucket exists; if not, one line names the
remote and the problem, the exit code is 1, and nothing is transferred or changed. If the dvc
command then fails (the server went away midway, Ctrl-C), the remote is asked again and the
same kind of line is printed. DVC itself does the transfers, so the next push completes a push
that stopped midway.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import TYPE_CHECKING

from emotion.errors import PipelineError, exit_on_error, first_line

if TYPE_CHECKING:  # dvc is imported when a command runs, not when tools.review imports this
    from dvc.repo import Repo

# `dvc status --cloud` for `status`: it compares the cache with the remote, nothing moves.
DVC_COMMANDS = {"push": ["push"], "pull": ["pull"], "status": ["status", "--cloud"]}
OBJECT_STORES = {"s3", "gs", "gcs", "azure", "az", "abfs"}
CREDENTIALS_HELP = ("set them in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for "
                    "S3) or with `dvc remote modify --local {name} ...`")


def remote_name(repo: Repo, requested: str | None) -> str:
    """The remote a dvc command would use: -r NAME, else the default one."""
    config = repo.config
    name = requested or config["core"].get("remote")
    if not name:
        raise PipelineError("no DVC remote: add one with `dvc remote add -d NAME URL` "
                            "(docs/sharing.md)")
    if name not in config["remote"]:
        raise PipelineError(f"no DVC remote named '{name}' (see `dvc remote list`)")
    return name


def describe(repo: Repo, name: str) -> str:
    """`DVC remote 'NAME' (URL[, endpoint ENDPOINT])`."""
    settings = repo.config["remote"][name]
    endpoint = settings.get("endpointurl")
    where = settings["url"] + (f", endpoint {endpoint}" if endpoint else "")
    return f"DVC remote '{name}' ({where})"


def remote_problem(repo: Repo, name: str) -> str | None:
    """What stops the remote from being used (server unreachable, credentials missing or
    rejected, bucket missing), in a few words; None if it answers."""
    try:
        remote = repo.cloud.get_remote(name)
        fs, path = remote.fs, remote.path
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & OBJECT_STORES:  # `exists` hides errors; `info` raises them
            bucket = fs.parts(path)[0]
            try:
                fs.info(bucket)
            except FileNotFoundError:
                return f"bucket '{bucket}' does not exist"
        else:
            fs.exists(path)
    except PermissionError:
        return "access denied: the credentials were rejected; " + CREDENTIALS_HELP.format(
            name=name)
    except Exception as error:  # the remote's client library raises its own types
        kind = type(error).__name__
        if kind == "NoCredentialsError":
            return "no credentials found; " + CREDENTIALS_HELP.format(name=name)
        if "ConnectionError" in kind or "ConnectorError" in kind or isinstance(
                error, ConnectionError):
            return f"cannot reach the server ({first_line(error)})"
        return first_line(error)
    return None


def run(command: str, dvc_args: list[str], requested_remote: str | None) -> None:
    """Check the remote, then run the dvc command; a PipelineError names what went wrong."""
    repo = open_repo()
    name = check(requested_remote, repo)
    process = subprocess.Popen([sys.executable, "-m", "dvc", *DVC_COMMANDS[command], "-r", name,
                                *dvc_args], stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate()
    except KeyboardInterrupt:  # Ctrl-C reaches dvc too: let it stop cleanly
        _, stderr = process.communicate()
        stderr += "\nERROR: interrupted"
    if process.returncode != 0:
        problem = remote_problem(repo, name) or last_error(stderr)
        again = f"; run `make {command}` again to finish" if command != "status" else ""
        raise PipelineError(f"{describe(repo, name)}: dvc {command} stopped: {problem}{again}")
    sys.stderr.write(stderr)


def check(requested_remote: str | None = None, repo: Repo | None = None) -> str:
    """The remote's name if it can be used; else a PipelineError naming it and the problem."""
    repo = repo or open_repo()
    name = remote_name(repo, requested_remote)
    problem = remote_problem(repo, name)
    if problem:
        raise PipelineError(f"{describe(repo, name)}: {problem}")
    return name


def open_repo() -> Repo:
    """The DVC repository of the working directory (its config and remotes)."""
    from dvc.repo import Repo

    return Repo()


def last_error(stderr: str) -> str:
    """DVC's last error (an `ERROR:` line and the lines it lists), on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    starts = [index for index, line in enumerate(lines) if line.startswith("ERROR")]
    if not starts:
        return lines[-1] if lines else "failed"
    error = [line for line in lines[starts[-1]:] if not line.startswith(("Having any", "<http"))]
    return " ".join(error).removeprefix("ERROR: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(DVC_COMMANDS))
    parser.add_argument("-r", "--remote", help="remote name (default: the default remote)")
    args, dvc_args = parser.parse_known_args()
    run(args.command, dvc_args, args.remote)


if __name__ == "__main__":
    exit_on_error(main)

"""Sharing through a DVC remote on a real S3 server (SeaweedFS, started by the `s3` fixture):
push and pull between clones, experiments through a bare git remote, credentials kept out of
git, one-line errors for a remote that cannot be used, and a push killed midway."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import (
    as_in_a_terminal,
    ci_review,
    copy_workspace,
    digest,
    dvc,
    dvc_status,
    fresh_clone,
    outputs_digest,
    run_command,
    run_in_process,
    sh,
    workspace_state,
)
from seaweedfs import S3Server

REMOTE = "store"
PREFIX = "cache"  # the remote's folder in the bucket
SHARED = ("data", "models/trained", "models/emotion", "models/serving")
TEXTS = ["i feel so happy and glad today", "i am furious and annoyed", "i am scared"]
# botocore's standard setting for no retries: a server that is down is told at once, not after
# the ~9 s of the default 5 attempts (the same line then: after the killed push, whose check of
# the remote runs with the default).
ONE_ATTEMPT = {"AWS_MAX_ATTEMPTS": "1"}


def add_remote(repo: Path, name: str, url: str, endpoint: str, level: str = "repo",
               default: bool = False, **local: str) -> None:
    """What `dvc remote add [-d] [--local] NAME URL` and `dvc remote modify [--local] NAME
    endpointurl ENDPOINT` write (DVC's config API, in this process: ~0.5 s a command less);
    `local` settings (the keys) go to the git-ignored .dvc/config.local, as `dvc remote
    modify --local` puts them."""
    from dvc.config import Config

    config = Config(dvc_dir=str(repo / ".dvc"))
    with config.edit(level) as settings:
        settings["remote"][name] = {"url": url, "endpointurl": endpoint}
        if default:
            settings["core"]["remote"] = name
    if local:
        with config.edit("local") as settings:
            settings["remote"].setdefault(name, {}).update(local)


def add_s3_remote(repo: Path, server: S3Server, local_credentials: bool = False,
                  committed: bool = True) -> None:
    """The default remote s3://<bucket>/cache at the server, committed to git (else in the
    git-ignored .dvc/config.local); with local_credentials, the keys go to config.local."""
    keys = ({"access_key_id": server.access_key, "secret_access_key": server.secret_key}
            if local_credentials else {})
    add_remote(repo, REMOTE, f"s3://{server.bucket}/{PREFIX}", server.endpoint,
               "repo" if committed else "local", default=True, **keys)
    if committed:
        sh(repo, "git", "add", ".dvc/config")
        sh(repo, "git", "commit", "-qm", "S3 remote")


def remote(repo: Path, command: str, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`make push` / `make pull` / `make remote-status` (tools.remote) in repo."""
    return run_command(repo, sys.executable, "-m", "tools.remote", command, *args, env=env)


def one_line_error(result: subprocess.CompletedProcess, server: S3Server,
                   url: str = f"s3://emotion/{PREFIX}", name: str = REMOTE) -> str:
    """The single stderr line of a failed command, checked to name the remote."""
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(
        f"error: DVC remote '{name}' ({url}, endpoint {server.endpoint}): "), lines[0]
    return lines[0]


def shared_digest(repo: Path) -> dict[str, str]:
    return digest(*(repo / path for path in SHARED), root=repo)


def predictions(repo: Path) -> str:
    result = run_in_process("emotion.prediction.cli", repo,
                            ["-f", "jsonl", "--no-progress", *TEXTS])
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_push_from_one_clone_and_pull_into_another(dvc_repo, s3, tmp_path):
    source, _ = dvc_repo
    a = copy_workspace(source, tmp_path / "a", with_repo=True)
    add_s3_remote(a, s3, local_credentials=True)

    # The keys live only in .dvc/config.local: untracked, in no commit, not in .dvc/config.
    assert s3.secret_key in (a / ".dvc/config.local").read_text()
    assert ".dvc/config.local" not in sh(a, "git", "ls-files").split()
    commits = sh(a, "git", "rev-list", "--all").split()
    assert run_command(a, "git", "grep", "-I", "-F", s3.secret_key, *commits).returncode == 1
    assert s3.secret_key not in (a / ".dvc/config").read_text()

    # Nothing pushed yet: ci-review names every output of dvc.lock.
    result = ci_review(a, "HEAD", tmp_path / "review-before")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in (tmp_path / "review-before/report.md").read_text().splitlines()
               if line.startswith("> Not pushed to the DVC remote")]
    for output in ("data/raw", "data/tokenized", "models/emotion", "models/serving"):
        assert f"`{output}`" in line

    # `make push` with the keys of config.local (no AWS_* variables in this environment).
    pushed = remote(a, "push")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert {key for key in s3.keys(PREFIX) if key.endswith(".dir")}  # folder manifests too
    result = ci_review(a, "HEAD", tmp_path / "review-after")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Not pushed" not in (tmp_path / "review-after/report.md").read_text()

    # Clone B: git only, an empty cache, the keys from the environment.
    b = fresh_clone(a, tmp_path / "b")
    assert not (b / "models/emotion").exists() and not (b / ".dvc/cache").exists()
    pulled = remote(b, "pull", env=s3.credentials)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert shared_digest(b) == shared_digest(a)
    assert outputs_digest(b) == outputs_digest(a)
    assert dvc_status(b) == {}
    assert "in sync" in remote(b, "status", env=s3.credentials).stdout
    assert predictions(b) == predictions(a)

    # The ONNX runtime folder as a versioned artifact (dvc.yaml's `artifacts:`; GTO, which
    # DVC brings, registers v0.0.1 and promotes it to prod as git tags). From an empty folder,
    # no clone: fetched by name and version from the remote, it labels text as the project's
    # own does.
    sh(a, "gto", "register", "emotion-onnx")
    sh(a, "gto", "promote", "emotion-onnx", "--stage", "prod")
    assert {"emotion-onnx@v0.0.1", "emotion-onnx#prod#1"} <= set(sh(a, "git", "tag").split())
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    dvc(consumer, "artifacts", "get", str(a), "emotion-onnx", "--rev", "v0.0.1", "-o", "model",
        env=s3.credentials)
    assert digest(consumer / "model", root=consumer / "model") == digest(
        a / "models/onnx", root=a / "models/onnx")
    result = run_in_process("emotion.prediction.cli", consumer,
                            ["--model", "model", "-f", "jsonl", "--no-progress", *TEXTS])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == predictions(a)


def test_remote_problems_are_one_line_and_change_nothing(dvc_repo, s3, tmp_path):
    source, _ = dvc_repo
    a = copy_workspace(source, tmp_path / "a", with_repo=True)
    add_s3_remote(a, s3)
    add_remote(a, "missing-bucket", f"s3://no-such-bucket/{PREFIX}", s3.endpoint)
    sh(a, "git", "commit", "-qam", "a remote whose bucket does not exist")
    b = fresh_clone(a, tmp_path / "b")
    wrong = {**s3.credentials, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    states = {repo: workspace_state(repo) for repo in (a, b)}

    cases = [
        ("push", a, [], wrong, "access denied: the credentials were rejected"),
        ("pull", b, [], wrong, "access denied: the credentials were rejected"),
        ("pull", b, [], {}, "no credentials found"),
        ("push", a, ["-r", "missing-bucket"], s3.credentials,
         "bucket 'no-such-bucket' does not exist"),
    ]
    for command, repo, args, env, problem in cases:
        remote_name = args[1] if args else REMOTE
        line = one_line_error(remote(repo, command, *args, env=env), s3,
                              url=f"s3://{'no-such-bucket' if args else 'emotion'}/{PREFIX}",
                              name=remote_name)
        assert problem in line, (command, line)
        assert "make push" not in line  # nothing started, nothing to finish
    assert s3.keys(PREFIX) == set()

    s3.stop()  # the server is down
    for command, repo in (("push", a), ("pull", b), ("status", b)):
        line = one_line_error(remote(repo, command, env={**s3.credentials, **ONE_ATTEMPT}), s3)
        assert "cannot reach the server" in line, line
    assert {repo: workspace_state(repo) for repo in (a, b)} == states


def cache_objects(repo: Path) -> dict[str, set[str]]:
    """Each output of dvc.lock and of the tracked .dvc files, with the keys of the objects a
    push stores for it (every file, and a folder's .dir manifest), relative to the remote."""
    def key(md5: str) -> str:
        return f"files/md5/{md5[:2]}/{md5[2:]}"

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values()
    git_tracked = {next(iter(out)) for stage in stages for out in stage["outs"]
                   if isinstance(out, dict) and next(iter(out.values())).get("cache") is False}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {out["path"]: out["md5"] for stage in lock["stages"].values()
            for out in stage.get("outs", []) if out["path"] not in git_tracked}
    for name in sh(repo, "git", "ls-files", "*.dvc").split():
        for out in yaml.safe_load((repo / name).read_text())["outs"]:
            outs[str(Path(name).parent / out["path"])] = out["md5"]
    objects = {}
    for path, md5 in outs.items():
        objects[path] = {key(md5)}
        if md5.endswith(".dir"):
            manifest = json.loads((repo / ".dvc/cache" / key(md5)).read_text())
            objects[path] |= {key(item["md5"]) for item in manifest}
    return objects


def test_push_killed_midway_is_completed_by_the_next_push(dvc_repo, s3, tmp_path):
    source, _ = dvc_repo
    a = copy_workspace(source, tmp_path / "a", with_repo=True)
    add_s3_remote(a, s3, local_credentials=True)
    # Many files, pushed one at a time: a push long enough to kill the server midway.
    extra = a / "data/extra"
    extra.mkdir()
    rng = random.Random(0)
    for index in range(300):
        (extra / f"part-{index:03d}.bin").write_bytes(rng.randbytes(32 * 1024))
    dvc(a, "add", "-q", "data/extra")
    sh(a, "git", "add", "-A")
    sh(a, "git", "commit", "-qm", "a 300-file folder")
    objects = cache_objects(a)
    every_key = set().union(*objects.values())

    def status_is_the_truth() -> set[str]:
        """`dvc status --cloud` names exactly the outputs with an object not on the
        server; those outputs."""
        present = {key.removeprefix(f"{PREFIX}/") for key in s3.keys(PREFIX)}
        missing = {out for out, keys in objects.items() if keys - present}
        status = json.loads(dvc(a, "status", "--cloud", "--json") or "{}")
        named = {path for path in status if not any(
            path.startswith(f"{other}/") for other in status)}
        assert named == missing, (named, missing)
        assert set(status.values()) <= {"new"}
        return missing

    assert status_is_the_truth() == set(objects)  # nothing pushed yet

    push = subprocess.Popen([sys.executable, "-m", "tools.remote", "push", "-j", "1"], cwd=a,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=as_in_a_terminal)
    # The push runs only between two listings (held by SIGSTOP while one lists the bucket),
    # so it cannot finish between the listing that sees 50 objects and the server's kill.
    while push.poll() is None:
        os.killpg(push.pid, signal.SIGSTOP)
        if len(s3.keys(PREFIX)) >= 50:
            break
        os.killpg(push.pid, signal.SIGCONT)
        time.sleep(0.1)
    assert push.poll() is None, "the push ended before the server could be killed"
    s3.kill()
    os.killpg(push.pid, signal.SIGCONT)
    time.sleep(1.0)
    os.killpg(push.pid, signal.SIGINT)  # the user gives up on DVC's retries: Ctrl-C
    _, stderr = push.communicate(timeout=120)
    result = subprocess.CompletedProcess(push.args, push.returncode, "", stderr)
    line = one_line_error(result, s3)
    assert "dvc push stopped: cannot reach the server" in line
    assert line.endswith("run `make push` again to finish")

    # Server down: the cloud status cannot be known, and says so.
    line = one_line_error(remote(a, "status", env=ONE_ATTEMPT), s3)
    assert "cannot reach the server" in line

    s3.start()  # the same data, on the same ports
    present = s3.keys(PREFIX)
    assert 50 <= len(present) < len(every_key)  # midway
    assert status_is_the_truth()  # some outputs incomplete, named as such

    finished = remote(a, "push")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert status_is_the_truth() == set()
    assert {key.removeprefix(f"{PREFIX}/") for key in s3.keys(PREFIX)} >= every_key

    b = fresh_clone(a, tmp_path / "b")
    pulled = remote(b, "pull", env=s3.credentials)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert digest(b / "data", root=b) == digest(a / "data", root=a)
    assert outputs_digest(b) == outputs_digest(a)


def test_queued_experiment_shared_through_s3_and_a_bare_git_remote(queued_experiments, s3,
                                                                     tmp_path):
    # The experiments ran before this remote existed, and `dvc exp push` / `dvc exp apply`
    # read the remote config of the experiment's commit: so the remote goes to config.local
    # in both clones (docs/sharing.md).
    a = copy_workspace(queued_experiments["root"], tmp_path / "a", with_repo=True)
    add_s3_remote(a, s3, committed=False)
    origin = tmp_path / "origin.git"
    sh(tmp_path, "git", "init", "-q", "--bare", str(origin))
    sh(a, "git", "remote", "add", "origin", str(origin))
    sh(a, "git", "push", "-q", "origin", "HEAD")
    # As after every run: the baseline's outputs go to the remote (`make push`); then the
    # experiment, as git refs plus the outputs it made.
    assert remote(a, "push", env=s3.credentials).returncode == 0
    pushed = dvc(a, "exp", "push", "origin", "seed-1", env=s3.credentials)
    assert "files uploaded" in pushed, pushed  # DVC only logs a failed cache push

    b = fresh_clone(origin, tmp_path / "b")
    add_s3_remote(b, s3, committed=False)
    assert "seed-1" not in dvc(b, "exp", "list", "--all-commits")
    dvc(b, "exp", "pull", "--no-cache", "origin", "seed-1")  # refs only: outputs come below
    shown = json.loads(dvc(b, "exp", "show", "--json", "--all-commits"))
    (experiment,) = [exp["revs"][0] for row in shown for exp in (row.get("experiments") or [])
                     if exp["revs"][0]["name"] == "seed-1"]
    metrics = experiment["data"]["metrics"]["metrics/evaluate.json"]["data"]
    ref = sh(a, "git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    (ref,) = [name for name in ref if name.endswith("/seed-1")]
    assert metrics == json.loads(sh(a, "git", "show", f"{ref}:metrics/evaluate.json"))

    # Without the outputs in the cache, apply brings the experiment's dvc.lock, params and
    # metrics and names the outputs to pull; `make pull` then fetches them from S3.
    applied = run_command(b, sys.executable, "-m", "dvc", "exp", "apply", "seed-1")
    # (the experiment ran up to evaluate: its own output is the train stage's model)
    assert "models/trained" in applied.stderr and "Is your cache up to date?" in applied.stderr
    assert (b / "params.yaml").read_text() == sh(a, "git", "show", f"{ref}:params.yaml")
    pulled = remote(b, "pull", env=s3.credentials)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    dvc(a, "exp", "apply", "seed-1")
    assert digest(b / "models/trained", root=b) == digest(a / "models/trained", root=a)
    assert (b / "metrics/evaluate.json").read_text() == (a / "metrics/evaluate.json").read_text()
    assert predictions(b) == predictions(a)

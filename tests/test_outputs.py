"""Writes that leave the complete old or the complete new output at any kill instant
(emotion/files.py): a process SIGKILLed by the fault hook (EMOTION_WRITE_KILL) at each step of
the commit protocol, for the library's several-outputs write, for the real evaluate stage and
for emotion-predict -o; then what a file a user named keeps (permissions, the input, a folder
that appears)."""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, copy_workspace, digest

from emotion.errors import UsageError
from emotion.files import KILL_VARIABLE, recover, user_file_output

POINTS = ["staged", "journaled", "replaced-1", "replaced-2", "committed"]
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from emotion.files import atomic_outputs
    with atomic_outputs(Path("models/emotion"), Path("metrics/train.json")) as (model, metrics):
        model.mkdir()
        (model / "weights.h5").write_text("new weights")
        (model / "config.json").write_text("new config")
        metrics.write_text("new metrics")
""")
OLD = {"models/emotion/weights.h5": "old weights", "models/emotion/stale.txt": "only old",
       "metrics/train.json": "old metrics"}
NEW = {"models/emotion/weights.h5": "new weights", "models/emotion/config.json": "new config",
       "metrics/train.json": "new metrics"}


def contents(root: Path, output: str) -> dict[str, str]:
    path = root / output
    files = sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []
    return {str(file.relative_to(root)): file.read_text() for file in files if file.is_file()}


def of(state: dict[str, str], output: str) -> dict[str, str]:
    return {name: text for name, text in state.items() if name.startswith(output)}


def leftovers(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob(".*staging-*"))


@pytest.mark.parametrize("point", POINTS)
def test_a_write_killed_at_any_step_leaves_each_output_old_or_new_then_all(tmp_path, point):
    for name, text in OLD.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, "-c", WRITER.format(root=str(ROOT))],
                            cwd=tmp_path, env={**os.environ, KILL_VARIABLE: point})
    assert result.returncode == -signal.SIGKILL
    for output in ("models/emotion", "metrics/train.json"):  # never missing, never mixed
        assert contents(tmp_path, output) in (of(OLD, output), of(NEW, output))
    recover(tmp_path / "metrics/train.json")  # what the next write of any of them runs first
    committed = POINTS.index(point) >= POINTS.index("journaled")
    state = {**contents(tmp_path, "models/emotion"), **contents(tmp_path, "metrics/train.json")}
    assert state == (NEW if committed else OLD)
    recover(tmp_path / "models/emotion")  # its own staging of a write that never committed
    assert leftovers(tmp_path) == []


@pytest.mark.pipeline
@pytest.mark.parametrize("point", ["journaled", "replaced-2"])
def test_the_evaluate_stage_killed_while_committing_is_finished_by_the_next_run(
        dvc_repo, tmp_path, point):
    """The real evaluate stage (three outputs in two folders), SIGKILLed after its commit
    journal and after its second output: every output is complete old or complete new at
    once, and the next run finishes the commit before it writes its own."""
    project = copy_workspace(dvc_repo[0], tmp_path / "project")
    outputs = [project / "plots/evaluate", project / "metrics/classification_report.json",
               project / "metrics/evaluate.json"]
    new = digest(*outputs, root=project)
    for output in outputs:  # recognisably old outputs
        if output.is_dir():
            for file in output.iterdir():
                file.write_text("old")
        else:
            output.write_text('{"old": true}')
    old = digest(*outputs, root=project)
    result = subprocess.run([sys.executable, "-m", "stages.evaluate"], cwd=project,
                            capture_output=True, text=True,
                            env={**os.environ, KILL_VARIABLE: point})
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    for output in outputs:
        name = str(output.relative_to(project))
        assert digest(output, root=project) in (
            {k: v for k, v in old.items() if k.startswith(name)},
            {k: v for k, v in new.items() if k.startswith(name)})
    recover(outputs[0])
    assert digest(*outputs, root=project) == new
    assert leftovers(project) == []


@pytest.mark.parametrize("point", ["staged", "replaced-1"])
def test_emotion_predict_killed_while_replacing_its_output(runtime_folders, tmp_path, point):
    out = tmp_path / "labels.jsonl"
    out.write_text("old labels\n")
    out.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "emotion.prediction.cli", "--model",
         str(runtime_folders["onnx"]), "-o", str(out), "i am glad", "i am sad"],
        capture_output=True, env={**os.environ, KILL_VARIABLE: point})
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    text = out.read_text()
    if point == "staged":
        assert text == "old labels\n"
    else:
        assert [json.loads(line)["text"] for line in text.splitlines()] == ["i am glad",
                                                                            "i am sad"]
        assert out.stat().st_mode & 0o777 == 0o600
    recover(out)
    assert leftovers(tmp_path) == []


def test_a_user_file_keeps_its_permissions_and_a_folder_that_appears_stays(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("old")
    out.chmod(0o640)
    with user_file_output(out) as staged:
        staged.write_text("new")
    assert out.read_text() == "new" and out.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.csv"
    umask = os.umask(0o022)
    try:
        with user_file_output(fresh) as staged:
            staged.write_text("new")
    finally:
        os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o644  # as any new file, not mkstemp's 0600
    late = tmp_path / "late.csv"
    with pytest.raises(UsageError, match="a folder appeared there"):
        with user_file_output(late) as staged:
            staged.write_text("new")
            late.mkdir()
            (late / "mine.txt").write_text("a user's file")
    assert (late / "mine.txt").read_text() == "a user's file"
    assert leftovers(tmp_path) == []


def test_emotion_predict_refuses_its_input_or_a_missing_folder_as_output(runtime_folders,
                                                                        tmp_path):
    source = tmp_path / "tweets.csv"
    source.write_text("id,text\n1,i am glad\n")
    for target, problem in ((source, "is also the input"),
                            (tmp_path / "no/such/out.csv", "does not exist")):
        result = subprocess.run(
            [sys.executable, "-m", "emotion.prediction.cli", "--model",
             str(runtime_folders["onnx"]), "--input", str(source), "-o", str(target)],
            capture_output=True, text=True)
        assert result.returncode == 2 and problem in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert source.read_text() == "id,text\n1,i am glad\n"
    assert not (tmp_path / "no").exists()


def test_a_write_error_is_one_line_and_keeps_the_old_file(runtime_folders, tmp_path):
    """A disk that fills up mid-write (here: the file size limit, RLIMIT_FSIZE, so that a
    write fails with EFBIG as it would with ENOSPC): one line naming the file, exit 1, the
    old output as it was, no temporary file left."""
    out = tmp_path / "labels.jsonl"
    out.write_text("old labels\n")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    result = subprocess.run(
        [sys.executable, "-m", "emotion.prediction.cli", "--model",
         str(runtime_folders["onnx"]), "-o", str(out), *["i am so glad today"] * 50],
        capture_output=True, text=True, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "labels.jsonl" in line and "too large" in line, line
    assert out.read_text() == "old labels\n"
    assert leftovers(tmp_path) == []

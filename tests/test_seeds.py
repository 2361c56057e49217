"""The seed-spread table (tools.seeds): real DVC experiments of the tiny project, and the
grouping and statistics on hand-made `dvc exp show --json` tables."""

import json
import re
import shutil
import statistics
import subprocess
import sys

import pytest
from conftest import dvc, run_in_process, sh
from scipy import stats

from tools.seeds import finished_runs, markdown, seed_spread


def test_out_refuses_a_folder_and_leaves_it_alone(tmp_path):
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    result = run_in_process("tools.seeds", tmp_path, ["--out", str(folder)])
    assert result.returncode == 2
    assert result.stderr == (f"error: {folder}: exists and is not a regular file; it is left "
                             "as it is (name a file to write)\n")
    assert [path.name for path in tmp_path.rglob("*")] == ["Documents", "keep.txt"]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in text, as cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_seeds_of_real_experiments_summarised_and_unfinished_ones_left_out(queued_experiments,
                                                                           tmp_path):
    # The queue's runs (seeds 1 and 2 finished, one failed) in a copy, plus one queued here.
    root = tmp_path / "repo"
    shutil.copytree(queued_experiments["root"], root, symlinks=True)
    dvc(root, "exp", "run", "evaluate", "--queue", "-S", "train.seed=3", "-n", "seed-3")

    out = tmp_path / "spread.md"
    printed = sh(root, sys.executable, "-m", "tools.seeds", "--out", str(out))
    assert out.read_text() == printed

    # The committed baseline (seed 7) and the experiments differ only in the seed: one recipe
    # of three runs. Expected figures from the runs' own metrics files in git.
    refs = sh(root, "git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    experiments = [ref for ref in refs if ref.endswith(("/seed-1", "/seed-2"))]
    runs = [json.loads(sh(root, "git", "show", f"{rev}:metrics/evaluate.json"))
            for rev in ("HEAD", *experiments)]
    assert len(runs) == 3 and runs[0] != runs[1] != runs[2]
    (row,) = table_rows(printed)
    header = [cell.strip() for cell in printed.splitlines()[2].strip("|").split("|")]
    cells = dict(zip(header, row))
    assert cells["runs (seeds)"] == "3 (1, 2, 7)"
    for key, column in (("test", "test accuracy"), ("validation", "validation loss")):
        metric = "accuracy" if column.endswith("accuracy") else "loss"
        values = [run[key][metric] for run in runs]
        # Printed to 4 decimals: within half a unit of the last digit of the exact figures
        # (pandas' float sums and statistics' exact ones may round a tie either way).
        assert re.fullmatch(r"\d+\.\d{4} ± \d+\.\d{4}", cells[column]), cells[column]
        mean, std = (float(figure) for figure in cells[column].split(" ± "))
        assert mean == pytest.approx(statistics.mean(values), rel=0, abs=0.5e-4 + 1e-12)
        assert std == pytest.approx(statistics.stdev(values), rel=0, abs=0.5e-4 + 1e-12)
    assert "Left out: 1 failed, 1 queued" in printed

    # A commit that changes no result: HEAD's experiments are none, its run is the old one;
    # with the commit before (-n 2) the two commits' identical runs count once.
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", "docs only")
    assert [row[0] for row in table_rows(sh(root, sys.executable, "-m", "tools.seeds"))] == [
        "1 (7)"]
    two_commits = sh(root, sys.executable, "-m", "tools.seeds", "-n", "2")
    assert [row[0] for row in table_rows(two_commits)] == ["3 (1, 2, 7)"]


def test_bad_revision_is_a_one_line_error(dvc_repo):
    root, _ = dvc_repo
    result = subprocess.run([sys.executable, "-m", "tools.seeds", "--rev", "no-such-rev"],
                            cwd=root, text=True, capture_output=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: dvc exp show:") and "no-such-rev" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- Grouping and statistics on hand-made tables -----------------------------------------


def entry(name: str, seed: int, learning_rate: float, loss: float, accuracy: float,
          code: str = "abc", error: dict | None = None) -> dict:
    data = {"params": {"params.yaml": {"data": {"train": {
                "seed": seed, "learning_rate": learning_rate, "bucket_lengths": [8, 16]}}}},
            "metrics": {"metrics/evaluate.json": {"data": {
                "validation": {"loss": loss, "accuracy": accuracy},
                "test": {"loss": loss + 0.01, "accuracy": accuracy - 0.01, "macro_f1": 0.8}}},
                "metrics/train.json": {"data": {"train_minutes": 20.0}}},
            # The model is a stage output and another stage's dependency: it varies by seed.
            "deps": {"stages/train.py": {"hash": code}, "models/emotion": {"hash": f"m{seed}"}},
            "outs": {"models/emotion": {"hash": f"m{seed}"}}}
    return {"rev": f"{name}-sha", "name": name, "data": data, "error": error,
            "experiments": None}


def show_table(baselines: list[dict], experiments: list[tuple[dict, str | None]]) -> list[dict]:
    """A `dvc exp show --json` table: the workspace, then the baselines, the first with the
    experiments (each with its executor state; None once finished)."""
    rows = [{**entry("workspace", 0, 0.0, 9.0, 0.0), "rev": "workspace"}, *baselines]
    rows[1] = {**rows[1], "experiments": [
        {"revs": [exp], "executor": {"state": state} if state else None}
        for exp, state in experiments]}
    return rows


def test_recipes_are_grouped_by_params_and_code_and_ranked_by_mean_validation_loss():
    fast = [entry(f"fast-{seed}", seed, 1e-4, loss, acc)
            for seed, loss, acc in ((1, 0.13, 0.93), (2, 0.15, 0.92), (3, 0.14, 0.94))]
    slow = [entry(f"slow-{seed}", seed, 1e-5, loss, acc)
            for seed, loss, acc in ((1, 0.19, 0.92), (2, 0.17, 0.93))]
    other_code = entry("new-code", 1, 1e-4, 0.10, 0.95, code="changed")
    unfinished = [(entry("queued", 4, 1e-4, 0.1, 0.9), "queued"),
                  (entry("running", 5, 1e-4, 0.1, 0.9), "running"),
                  (entry("broken", 6, 1e-4, 0.1, 0.9, error={"msg": "failed"}), None)]
    # A docs-only commit repeats main's run: the same params and metrics count once.
    main, docs_only = slow[0], {**slow[0], "rev": "docs-sha", "name": "docs"}
    finished = [(run, None) for run in (*fast, slow[1], other_code)]
    table = show_table([main, docs_only], [*finished, *unfinished])

    runs, left_out = finished_runs(table)
    assert sorted(run.name for run in runs) == sorted(
        ["slow-1", "fast-1", "fast-2", "fast-3", "slow-2", "new-code"])
    assert left_out == {"queued": 1, "running": 1, "failed": 1}

    spread = seed_spread(runs)
    recipes = spread.recipes
    assert spread.varying == ["train.learning_rate", "code (commit)"]
    assert list(recipes["runs"]) == [1, 3, 2]  # new-code (0.10), fast (0.14), slow (0.18)
    fast_row = recipes.iloc[1]
    assert fast_row["seeds"] == "1, 2, 3"
    assert fast_row["validation.loss mean"] == pytest.approx(statistics.mean([0.13, 0.15, 0.14]))
    assert fast_row["validation.loss std"] == pytest.approx(statistics.stdev([0.13, 0.15, 0.14]))
    assert fast_row["test.accuracy mean"] == pytest.approx(statistics.mean([0.92, 0.91, 0.93]))

    lines = markdown(spread)
    assert "Best by mean validation loss: new-code." in lines
    assert any("too few seeds for a test" in line for line in lines)  # 1 seed vs 3

    # Without the one-seed recipe: fast (3 seeds) against slow (2 seeds), Welch's t-test.
    spread = seed_spread([run for run in runs if run.name != "new-code"])
    assert spread.varying == ["train.learning_rate"]
    text = "\n".join(markdown(spread))
    p_value = stats.ttest_ind([0.13, 0.15, 0.14], [0.19, 0.17], equal_var=False).pvalue
    assert f"validation loss, best − runner-up (slow-1, slow-2): -0.0400 " \
           f"(Welch's t-test p = {p_value:.3g})" in text
    rows = table_rows(text)
    assert [row[0] for row in rows] == ["0.0001", "1e-05"]
    assert rows[0][1] == "3 (1, 2, 3)" and rows[1][1] == "2 (1, 2)"


def test_no_finished_run_is_a_clear_error():
    from emotion.errors import PipelineError

    with pytest.raises(PipelineError, match="no finished runs"):
        seed_spread([])

"""The review command (make review / tools.review) on two revisions of the tiny project."""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import (
    ci_review,
    dvc_checkout,
    fresh_clone,
    require,
    run_in_process,
    set_param,
    sh,
    workspace_state,
)

from emotion.files import user_folder_output
from tools.compare import accuracy_interval, compare, mcnemar_exact, why_not_comparable
from tools.review import NO_CHANGES, REPORT_MARKER, STALE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network (see the env docs): no background connections at all.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=20000"]


def review(root: Path, base: str, out: Path, *options: str) -> str:
    """tools.review in this process (its dvc and git commands are processes); the report."""
    result = run_in_process("tools.review", root, ["--base", base, "--out", str(out), *options])
    assert result.returncode == 0, result.stderr[-3000:]
    return (out / "report.md").read_text()


@pytest.fixture(scope="module")
def changed_report(dvc_repo, experiment, tmp_path_factory):
    """A report of the shared experiment's branch (another learning rate, among other
    params) against the baseline commit."""
    root, _ = dvc_repo
    base = experiment["base"]
    branch = sh(root, "git", "branch", "--show-current").strip()
    sh(root, "git", "checkout", "-q", experiment["branch"])
    try:
        dvc_checkout(root)
        out = tmp_path_factory.mktemp("review") / "review"
        report = review(root, base, out)
    finally:
        sh(root, "git", "checkout", "-q", branch)
        dvc_checkout(root)
    return base, out, report


def metric_row(report: str, name: str) -> list[str]:
    (row,) = [line for line in report.splitlines() if f"| {name} " in line]
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_report_tables_hold_both_revisions(changed_report):
    base, _, report = changed_report
    assert NO_CHANGES not in report
    for name in ("test.accuracy", "test.loss"):
        path, metric, old, new, change = metric_row(report, name)
        assert path == "metrics/evaluate.json"
        assert re.fullmatch(r"[0-9.]+", old) and re.fullmatch(r"[0-9.]+", new)
    (lr_row,) = [line for line in report.splitlines() if "train.learning_rate" in line]
    assert "0.001" in lr_row and "0.003" in lr_row
    assert f"`{base}`" in report


def test_report_images_exist_for_every_plot(changed_report, dvc_repo):
    _, out, report = changed_report
    linked = re.findall(r"!\[[^\]]*\]\((images/[^)]+)\)", report)
    for link in linked:
        assert (out / link).stat().st_size > 1000, link
    plots = yaml.safe_load((dvc_repo[0] / "dvc.yaml").read_text())["plots"]
    titles = [next(iter(p)) if isinstance(p, dict) else p for p in plots]
    for title in titles:
        assert f"### {title}" in report, title
    # data plots: one PNG of both revisions, one per file of a folder (the live metrics');
    # image plots: one PNG per revision
    folder = dvc_repo[0]
    assert len(linked) == sum(
        2 if title.endswith(".png") else
        len(list((folder / title).iterdir())) if (folder / title).is_dir() else 1
        for title in titles)
    assert "Plots missing" not in report


def test_report_has_the_paired_test_of_the_two_revisions(changed_report, dvc_repo):
    base, _, report = changed_report
    section = report.split("## Is the change real? (test split, paired)")[1].split("## Plots")[0]
    assert "McNemar exact p" in section and "95% CI" in section
    assert "### Per-class F1 (test)" in section
    for label in ("sadness", "surprise"):
        assert f"| {label} " in section


def test_out_replaces_only_a_folder_an_earlier_review_wrote(changed_report, tmp_path):
    """--out: a folder without the review's marker (a user's), a file or a symlink to a
    folder is a one-line error, exit 2, nothing touched; a folder with it is replaced whole."""
    _, out, _ = changed_report
    assert (out / REPORT_MARKER).is_file()
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "keep.txt").write_text("mine")
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "link").symlink_to(out)
    before = workspace_state(tmp_path)
    for path in (documents, tmp_path / "notes.md", tmp_path / "link"):
        result = run_in_process("tools.review", tmp_path, ["--base", "main", "--out", str(path)])
        assert result.returncode == 2
        assert result.stderr == (f"error: {path}: exists and is not a folder this command "
                                 f"wrote (no {REPORT_MARKER} in it); it is left as it is (name "
                                 "a new folder, or remove it first)\n")
    assert workspace_state(tmp_path) == before
    # What the review does with its own folder, on a copy: replaced whole, marker and all.
    earlier = shutil.copytree(out, tmp_path / "earlier")
    (earlier / "stale.png").write_text("from an earlier review")
    with user_folder_output(earlier, REPORT_MARKER) as staged:
        staged.mkdir()
        (staged / "report.md").write_text("new")
    assert sorted(path.name for path in earlier.iterdir()) == [REPORT_MARKER, "report.md"]


def test_review_fails_cleanly_on_an_unknown_base(dvc_repo, tmp_path):
    root, _ = dvc_repo
    result = subprocess.run([sys.executable, "-m", "tools.review", "--base", "no-such-rev",
                             "--out", str(tmp_path / "review")], cwd=root, text=True,
                            capture_output=True)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "review").exists()


def test_interactive_page_renders_offline_in_chromium(changed_report, dvc_repo):
    require(CHROMIUM is not None, "Chromium")
    _, out, _ = changed_report
    page = out / "html" / "index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=", html)  # nothing to fetch: all inlined
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], text=True,
                             capture_output=True, timeout=120).stdout
        shot = out / "screenshot.png"
        subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}",
                        page.as_uri()], capture_output=True, timeout=120)
    plots = yaml.safe_load((dvc_repo[0] / "dvc.yaml").read_text())["plots"]
    data_plots = [p for p in plots if isinstance(p, dict)]
    # vega-embed draws each data plot into a canvas with class "marks"
    assert dom.count('class="marks"') >= len(data_plots)
    assert shot.stat().st_size > 20_000


# --- make ci-review: committed results only, never training ---------------------------------


def test_ci_review_of_a_docs_only_branch_in_a_fresh_clone(dvc_repo, tmp_path):
    """Also the unchanged case: no metric changed, said against a relative git revision."""
    root, _ = dvc_repo
    clone = fresh_clone(root, tmp_path / "clone")
    sh(clone, "git", "checkout", "-q", "-b", "docs-only")
    (clone / "NOTES.md").write_text("Docs only.\n")
    sh(clone, "git", "add", "NOTES.md")
    sh(clone, "git", "commit", "-qm", "docs")
    result = ci_review(clone, "HEAD~1", tmp_path / "review")
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "review/report.md").read_text()
    assert f"{NO_CHANGES} `HEAD~1`" in report and STALE not in report
    assert "No param changed." in report
    assert "Running stage" not in result.stdout + result.stderr
    # Nothing was reproduced: the DVC-cached outputs are still absent from the clone.
    for path in ("data/raw", "data/tokenized", "models/emotion"):
        assert not (clone / path).exists(), path
    assert not (clone / ".dvc/cache").exists() or not any((clone / ".dvc/cache").rglob("*.dir"))
    assert "difference | 95% CI" in report and "| 0 | 0 | 1 |" in report  # same predictions


def test_ci_review_fails_on_params_committed_without_repro(dvc_repo, tmp_path):
    root, _ = dvc_repo
    base = sh(root, "git", "rev-parse", "HEAD").strip()
    clone = fresh_clone(root, tmp_path / "clone")
    set_param(clone, "train", "learning_rate", 5.0e-3)
    sh(clone, "git", "commit", "-qam", "new learning rate, results not reproduced")
    result = ci_review(clone, base, tmp_path / "review")
    assert result.returncode != 0
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith("error: ") and "train" in message and "Traceback" not in message
    report = (tmp_path / "review/report.md").read_text()
    assert report.splitlines()[2] == f"> **{STALE}**"
    (train_line,) = [line for line in report.splitlines() if line.startswith("> - `train`")]
    assert "param train" in train_line
    assert "`download`" not in report and "`tokenize`" not in report  # absent data is not stale


# --- The statistics, against hand-computed cases ------------------------------------------


def predictions(actual: str, predicted: str) -> pd.DataFrame:
    return pd.DataFrame({"actual": list(actual), "predicted": list(predicted),
                         "text": [f"text {i}" for i in range(len(actual))]})


def test_mcnemar_exact_against_hand_computed_values():
    assert mcnemar_exact(0, 0) == 1.0  # all predictions equal
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)  # 0.00195
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    # 1 fixed, 4 broken: P(X <= 1) for Binomial(5, 1/2) = 6/32, two-sided 12/32
    assert mcnemar_exact(1, 4) == pytest.approx(12 / 32)


def test_paired_comparison_counts_flips_and_bounds_the_difference():
    old = predictions("aabbab" * 10, "aabbaa" * 10)  # 50/60 right
    new = predictions("aabbab" * 10, "aabbab" * 10)  # all right: 10 fixed, 0 broken
    result = compare(old, new)
    assert (result.fixed, result.broken) == (10, 0)
    assert result.difference == pytest.approx(10 / 60)
    assert result.p_value == pytest.approx(2 * 0.5**10)
    low, high = result.interval
    assert low < 10 / 60 < high and low > 0
    # The paired t interval: mean d +- t(0.975, 59) * sd(d) / sqrt(60), d in {0, 1}
    import numpy as np
    from scipy import stats

    d = np.array([1.0] * 10 + [0.0] * 50)
    half = stats.t.ppf(0.975, 59) * d.std(ddof=1) / np.sqrt(60)
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert len(result.fixed_examples) == 10 and len(result.broken_examples) == 0
    assert set(result.fixed_examples["old → new"]) == {"a → b"}
    f1 = result.f1.set_index("label")
    assert f1.loc["b", "new F1"] == 1.0 and f1.loc["b", "change"] > 0
    assert accuracy_interval(np.ones(5, bool), np.ones(5, bool)) == (0.0, 0.0)


def test_different_test_sets_are_not_paired():
    old = predictions("abab", "abab")
    assert why_not_comparable(old, predictions("aba", "aba")) is not None
    assert "labels" in why_not_comparable(old, predictions("abaa", "abab"))
    other_texts = predictions("abab", "abab").assign(text=["x", "y", "z", "w"])
    assert "texts" in why_not_comparable(old, other_texts)
    assert why_not_comparable(old, predictions("abab", "bbbb")) is None

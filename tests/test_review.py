"""The review command (make review / tools.review) on two revisions of the tiny project."""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import dvc, set_param, sh

from tools.review import NO_CHANGES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network (see the env docs): no background connections at all.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=20000"]


def review(root: Path, base: str, out: Path) -> str:
    sh(root, sys.executable, "-m", "tools.review", "--base", base, "--out", str(out))
    return (out / "report.md").read_text()


@pytest.fixture(scope="module")
def changed_report(dvc_repo, tmp_path_factory):
    """A report of a second commit (another learning rate) against the baseline commit."""
    root, _ = dvc_repo
    base = sh(root, "git", "rev-parse", "HEAD").strip()
    branch = sh(root, "git", "branch", "--show-current").strip()
    sh(root, "git", "checkout", "-q", "-b", "faster-lr")
    set_param(root, "train", "learning_rate", 3.0e-3)
    try:
        dvc(root, "repro")
        sh(root, "git", "commit", "-qam", "faster learning rate")
        out = tmp_path_factory.mktemp("review") / "review"
        report = review(root, base, out)
    finally:
        sh(root, "git", "checkout", "-q", branch)
        dvc(root, "checkout", "-q")
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
    # data plots: one PNG of both revisions; image plots: one PNG per revision
    images = [t for t in titles if not isinstance(t, dict) and t.endswith(".png")]
    assert len(linked) == len(titles) - len(images) + 2 * len(images)
    assert "Plots missing" not in report


def test_unchanged_workspace_says_so(dvc_repo, tmp_path):
    root, _ = dvc_repo
    report = review(root, "HEAD", tmp_path / "review")
    assert f"{NO_CHANGES} `HEAD`" in report


def test_review_fails_cleanly_on_an_unknown_base(dvc_repo, tmp_path):
    root, _ = dvc_repo
    result = subprocess.run([sys.executable, "-m", "tools.review", "--base", "no-such-rev",
                             "--out", str(tmp_path / "review")], cwd=root, text=True,
                            capture_output=True)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "review").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_interactive_page_renders_offline_in_chromium(changed_report, dvc_repo):
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

"""The README's paragraphs that quote metrics/*.json (tools.metrics_docs) say what the
committed metrics say, and a changed metric fails the check until the text follows."""

import json
import shutil

from conftest import ROOT, run_in_process


def test_readme_quotes_the_committed_metrics():
    result = run_in_process("tools.metrics_docs", ROOT, ["--check"])
    assert result.returncode == 0, result.stderr


def flat(text: str) -> str:
    """The text with every run of whitespace one space (the paragraphs are wrapped)."""
    return " ".join(text.split())


def test_a_changed_metric_fails_the_check_until_the_text_follows(tmp_path):
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    evaluate = tmp_path / "metrics/evaluate.json"
    metrics = json.loads(evaluate.read_text())
    old = f"accuracy **{metrics['test']['accuracy']:.4f}**"
    metrics["test"]["accuracy"] = round(metrics["test"]["accuracy"] - 0.0123, 6)
    new = f"accuracy **{metrics['test']['accuracy']:.4f}**"
    evaluate.write_text(json.dumps(metrics, indent=2))
    before = (tmp_path / "README.md").read_text()
    assert old in flat(before) and new not in flat(before)

    stale = run_in_process("tools.metrics_docs", tmp_path, ["--check"])
    assert stale.returncode == 1
    assert stale.stderr == ("error: README.md: the metrics paragraphs results differ from "
                            "metrics/*.json: run python -m tools.metrics_docs\n")
    assert (tmp_path / "README.md").read_text() == before  # --check changes nothing

    assert run_in_process("tools.metrics_docs", tmp_path).returncode == 0
    after = (tmp_path / "README.md").read_text()
    assert new in flat(after) and old not in flat(after)
    # Only the results paragraph changed: the text outside its markers is as it was.
    outside = [text.split("<!-- /metrics:results -->")[-1] for text in (before, after)]
    assert outside[0] == outside[1]
    assert before.split("<!-- metrics:results -->")[0] == after.split(
        "<!-- metrics:results -->")[0]
    assert run_in_process("tools.metrics_docs", tmp_path, ["--check"]).returncode == 0

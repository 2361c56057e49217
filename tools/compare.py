"""Is a change more than noise? A paired comparison of two revisions' predictions on the same
test examples: the accuracy difference with a 95% confidence interval, McNemar's exact test,
per-class F1 changes, and examples that flipped each way.

Input: the per-example CSVs that the evaluate stage writes (plots/evaluate/confusion_test.csv:
actual, predicted, text; one row per test example, in test-set order).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import f1_score

SHOWN_FLIPS = 10


@dataclass
class PairedComparison:
    examples: int
    old_accuracy: float
    new_accuracy: float
    fixed: int  # wrong before, right now
    broken: int  # right before, wrong now
    interval: tuple[float, float]  # 95% CI of new - old accuracy
    p_value: float  # McNemar's exact test
    f1: pd.DataFrame  # per label: old, new, change
    fixed_examples: pd.DataFrame
    broken_examples: pd.DataFrame

    @property
    def difference(self) -> float:
        return self.new_accuracy - self.old_accuracy


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against Binomial(n, 1/2)."""
    if fixed + broken == 0:
        return 1.0
    return float(stats.binomtest(fixed, fixed + broken, 0.5).pvalue)


def accuracy_interval(old_correct: np.ndarray, new_correct: np.ndarray) -> tuple[float, float]:
    """95% confidence interval of the paired accuracy difference (paired t interval on the
    per-example differences; with identical correctness it is the single point 0)."""
    differences = new_correct.astype(float) - old_correct.astype(float)
    if not differences.any():
        return (0.0, 0.0)
    result = stats.ttest_rel(new_correct.astype(float), old_correct.astype(float))
    low, high = result.confidence_interval(0.95)
    return (float(low), float(high))


def why_not_comparable(old: pd.DataFrame, new: pd.DataFrame) -> str | None:
    """None if both sides scored the same examples, else what differs."""
    if len(old) != len(new):
        return f"the test sets differ in size ({len(old)} vs {len(new)} examples)"
    if set(old["actual"]) | set(old["predicted"]) != set(new["actual"]) | set(new["predicted"]):
        return "the label sets differ"
    if "text" in old and "text" in new and not old["text"].equals(new["text"]):
        return "the test texts differ"
    if not old["actual"].equals(new["actual"]):
        return "the test labels differ"
    return None


def compare(old: pd.DataFrame, new: pd.DataFrame) -> PairedComparison:
    """Compare two revisions' predictions on the same test examples (see why_not_comparable)."""
    old_correct = (old["actual"] == old["predicted"]).to_numpy()
    new_correct = (new["actual"] == new["predicted"]).to_numpy()
    fixed_mask, broken_mask = ~old_correct & new_correct, old_correct & ~new_correct
    labels = sorted(set(new["actual"]))
    old_f1 = f1_score(old["actual"], old["predicted"], labels=labels, average=None,
                      zero_division=0)
    new_f1 = f1_score(new["actual"], new["predicted"], labels=labels, average=None,
                      zero_division=0)
    f1 = pd.DataFrame({"label": labels, "old F1": old_f1, "new F1": new_f1,
                       "change": new_f1 - old_f1})

    def flips(mask: np.ndarray) -> pd.DataFrame:
        rows = pd.DataFrame({
            "text": new["text"] if "text" in new else pd.Series([""] * len(new)),
            "true label": new["actual"], "old → new": old["predicted"] + " → " +
            new["predicted"]})
        return rows[mask].head(SHOWN_FLIPS)

    return PairedComparison(
        examples=len(new), old_accuracy=float(old_correct.mean()),
        new_accuracy=float(new_correct.mean()), fixed=int(fixed_mask.sum()),
        broken=int(broken_mask.sum()), interval=accuracy_interval(old_correct, new_correct),
        p_value=mcnemar_exact(int(fixed_mask.sum()), int(broken_mask.sum())), f1=f1,
        fixed_examples=flips(fixed_mask), broken_examples=flips(broken_mask))


def markdown(result: PairedComparison, old_name: str, new_name: str) -> list[str]:
    """The comparison as Markdown lines."""
    low, high = result.interval
    verdict = ("the difference is within noise (p ≥ 0.05)" if result.p_value >= 0.05
               else "the difference is unlikely to be noise (p < 0.05)")
    lines = [
        f"Same {result.examples} test examples, paired: `{old_name}` → `{new_name}`.", "",
        "| accuracy (old) | accuracy (new) | difference | 95% CI | fixed | broken | "
        "McNemar exact p |",
        "|---|---|---|---|---|---|---|",
        f"| {result.old_accuracy:.4f} | {result.new_accuracy:.4f} | {result.difference:+.4f} | "
        f"[{low:+.4f}, {high:+.4f}] | {result.fixed} | {result.broken} | {result.p_value:.4g} |",
        "", f"Fixed: wrong before, right now; broken: the reverse. McNemar's exact test on "
        f"those {result.fixed + result.broken} discordant examples: {verdict}.", "",
        "### Per-class F1 (test)", "",
        result.f1.to_markdown(index=False, floatfmt=("", ".4f", ".4f", "+.4f")), "",
    ]
    for title, rows in (("fixed", result.fixed_examples), ("broken", result.broken_examples)):
        if len(rows):
            escaped = rows.replace({r"\|": r"\|", r"\s+": " "}, regex=True)
            lines += [f"### Examples {title} (up to {SHOWN_FLIPS})", "",
                      escaped.to_markdown(index=False), ""]
    return lines


def read_predictions(csv_text: str) -> pd.DataFrame:
    """A per-example CSV (actual, predicted[, text]) as read from a file or from git."""
    return pd.read_csv(io.StringIO(csv_text), keep_default_na=False, dtype=str)

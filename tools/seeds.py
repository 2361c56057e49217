"""Seed spread: every recipe's metrics as mean ± standard deviation over the seeds it was run
with, recipes ranked by mean validation loss (the criterion that also picks the epoch), and
the best recipe tested against the runner-up.

    python -m tools.seeds [--rev REV] [-n NUM] [--all-commits] [--out FILE]

Runs are the committed results of the baseline commits and their finished DVC experiments, as
`dvc exp show` lists them (default: HEAD's; `-n 3`: those of HEAD and the two commits before).
A recipe is a run's params without `train.seed`, and its code and data (the hashes of the
pipeline's dependencies): runs that differ only in the seed are seeds of one recipe. Commits
that repeat their parent's run (same params and metrics) count once. Queued, running and
failed experiments are left out and counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from emotion.errors import PipelineError, exit_on_error
from emotion.files import user_file, user_file_output
from tools.commands import dvc

SEED = "train.seed"
CODE = "code (commit)"
SELECTED_BY = "validation.loss"
# Shown metrics: the key in the flattened metrics/evaluate.json (+ train_minutes) → column.
# Since calibration, the split scores are of the calibrated probabilities and "uncalibrated"
# holds the raw ones' (older runs have raw scores only, so their raw columns are filled from
# them).
COLUMNS = {"validation.loss": "validation loss", "validation.accuracy": "validation accuracy",
           "test.accuracy": "test accuracy", "test.loss": "test loss",
           "test.macro_f1": "test macro-F1", "test.ece": "test ECE",
           "uncalibrated.test.loss": "test loss (raw)", "uncalibrated.test.ece": "test ECE (raw)",
           "calibration.temperature": "temperature", "train_minutes": "train minutes"}


@dataclass
class Run:
    name: str
    baseline: str  # the commit the run belongs to (an experiment's: its baseline)
    code: str  # a digest of the pipeline's source dependencies (code, data) as the run used
    params: dict[str, object]  # flattened params.yaml: {"train.seed": 1, ...}
    metrics: dict[str, float]  # flattened metrics/evaluate.json + train_minutes


def flatten(tree: dict) -> dict[str, object]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists are kept as values."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": leaf for inner, leaf in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def run_of(name: str, baseline: str, data: dict | None) -> Run | None:
    """A Run from a `dvc exp show --json` entry's data; None if it has no evaluate metrics."""
    metrics = (data or {}).get("metrics") or {}
    evaluation = (metrics.get("metrics/evaluate.json") or {}).get("data")
    if not evaluation:
        return None
    training = (metrics.get("metrics/train.json") or {}).get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    # Sources only: a stage's output used as another's dependency (the model) varies by seed.
    outputs = data.get("outs") or {}
    dependencies = {path: entry.get("hash") for path, entry in (data.get("deps") or {}).items()
                    if path not in outputs}
    code = hashlib.md5(json.dumps(dependencies, sort_keys=True).encode()).hexdigest()
    scores = flatten(evaluation)
    if "calibration.temperature" not in scores and "test.loss" in scores:  # before calibration
        scores["uncalibrated.test.loss"] = scores["test.loss"]
    return Run(name, baseline, code, flatten(params),
               {**scores, "train_minutes": training.get("train_minutes")})


def finished_runs(table: list[dict]) -> tuple[list[Run], dict[str, int]]:
    """The baseline commits and finished experiments of a `dvc exp show --json` table (not the
    workspace, which is uncommitted), and how many experiments were left out, by state."""
    runs, left_out, seen = [], {}, set()
    for commit in table:
        if commit["rev"] == "workspace":
            continue
        commit_name = commit.get("name") or commit["rev"][:7]
        baseline = run_of(commit_name, commit_name, commit.get("data"))
        # Commits that changed no result (docs, tools) repeat their parent's run: count it once.
        identity = baseline and json.dumps([baseline.params, baseline.metrics], sort_keys=True)
        if baseline and identity not in seen:
            seen.add(identity)
            runs.append(baseline)
        for experiment in commit.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state", "success")
            for revision in experiment.get("revs") or []:
                run = run_of(revision.get("name") or revision["rev"][:7], commit_name,
                             revision.get("data"))
                problem = (state if state != "success" else
                           "failed" if revision.get("error") else
                           "without metrics" if run is None else None)
                if problem:
                    left_out[problem] = left_out.get(problem, 0) + 1
                else:
                    runs.append(run)
    return runs, left_out


@dataclass
class Spread:
    recipes: pd.DataFrame  # one row per recipe, best first: varying params, seeds, mean ± std
    varying: list[str]  # the params (besides the seed) that tell the recipes apart
    values: list[pd.DataFrame]  # per recipe, in the order of `recipes`: its runs' metrics


def seed_spread(runs: list[Run]) -> Spread:
    """Group runs into recipes (params without the seed) and summarise each over its seeds."""
    if not runs:
        raise PipelineError("no finished runs with metrics/evaluate.json: run `dvc repro` or "
                            "queue experiments (`dvc exp run --queue -S train.seed=...`)")
    params = pd.DataFrame([{key: json.dumps(value) for key, value in run.params.items()}
                           for run in runs])
    metrics = pd.DataFrame([run.metrics for run in runs]).reindex(columns=list(COLUMNS))
    metrics = metrics.astype(float)  # a metric older runs lack is NaN, shown empty
    params[CODE] = [run.code for run in runs]
    varying = [key for key in params.columns
               if key != SEED and params[key].nunique(dropna=False) > 1]
    recipe_of = (params[varying].fillna("null").apply(tuple, axis=1) if varying
                 else pd.Series([()] * len(runs)))
    rows, values = [], []
    for recipe, members in recipe_of.groupby(recipe_of, sort=False).groups.items():
        group = metrics.loc[members]
        seeds = params.loc[members, SEED].dropna().map(json.loads) if SEED in params else []
        row = dict(zip(varying, recipe))  # JSON text of each value; "null" if unset
        if CODE in row:  # name the code by the (newest) commit that ran it
            row[CODE] = runs[members[0]].baseline
        row.update(runs=len(members), seeds=", ".join(str(seed) for seed in sorted(seeds)),
                   names=", ".join(sorted(runs[index].name for index in members)))
        row.update({f"{key} mean": group[key].mean() for key in COLUMNS})
        row.update({f"{key} std": group[key].std(ddof=1) for key in COLUMNS})
        rows.append(row)
        values.append(group.reset_index(drop=True))
    table = pd.DataFrame(rows)
    order = table[f"{SELECTED_BY} mean"].argsort(kind="stable").tolist()
    return Spread(table.iloc[order].reset_index(drop=True), varying,
                  [values[index] for index in order])


def welch(first: pd.Series, second: pd.Series) -> float | None:
    """Welch's two-sided t-test p-value of two sets of per-seed values (None below 2 each)."""
    if min(len(first), len(second)) < 2:
        return None
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def markdown(spread: Spread) -> list[str]:
    """The recipes table (best first) and the best-versus-runner-up comparison."""
    table = spread.recipes

    def cell(row: pd.Series, key: str) -> str:
        digits = 1 if key == "train_minutes" else 4
        mean, std = row[f"{key} mean"], row[f"{key} std"]
        if pd.isna(mean):
            return ""
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if row["runs"] > 1 else "")

    shown = pd.DataFrame({
        **{key: table[key].map(lambda value: "–" if value == "null" else value.strip('"'))
           for key in spread.varying},
        "runs (seeds)": [f"{row.runs} ({row.seeds})" for row in table.itertuples()],
        **{title: [cell(row, key) for _, row in table.iterrows()]
           for key, title in COLUMNS.items()}})
    lines = ["Mean ± sample standard deviation over seeds; recipes ranked by mean "
             f"{SELECTED_BY.replace('.', ' ')}, best first.", "",
             shown.to_markdown(index=False, disable_numparse=True), ""]
    best = table.iloc[0]
    lines.append(f"Best by mean {SELECTED_BY.replace('.', ' ')}: {best['names']}.")
    if len(table) > 1:
        runner_up = table.iloc[1]
        first, second = spread.values[0], spread.values[1]
        for key in (SELECTED_BY, "test.accuracy"):
            difference = best[f"{key} mean"] - runner_up[f"{key} mean"]
            p_value = welch(first[key], second[key])
            tested = ("Welch's t-test p = " + f"{p_value:.3g}" if p_value is not None
                      else "too few seeds for a test")
            lines.append(f"- {COLUMNS[key]}, best − runner-up ({runner_up['names']}): "
                         f"{difference:+.4f} ({tested}).")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description="Mean ± std over seeds of each recipe.")
    parser.add_argument("--rev", help="the baseline commit whose experiments to use (HEAD)")
    parser.add_argument("-n", "--num", type=int,
                        help="also the experiments of the commits before it: this many in all")
    parser.add_argument("--all-commits", action="store_true",
                        help="the experiments of every commit")
    parser.add_argument("--out", help="also write the Markdown to this file")
    args = parser.parse_args()
    if args.out:
        user_file(args.out)  # a path it must not replace: an error before any work

    options = [*(["--rev", args.rev] if args.rev else []),
               *(["--num", str(args.num)] if args.num else []),
               *(["--all-commits"] if args.all_commits else [])]
    runs, left_out = finished_runs(json.loads(dvc("exp", "show", "--json", *options)))
    lines = markdown(seed_spread(runs))
    if left_out:
        lines.append("Left out: " + ", ".join(f"{count} {state}"
                                              for state, count in sorted(left_out.items())))
    text = "\n".join(lines).rstrip() + "\n"
    print(text, end="")
    if args.out:
        with user_file_output(args.out) as path:
            path.write_text(text, encoding="utf8")


if __name__ == "__main__":
    exit_on_error(main)

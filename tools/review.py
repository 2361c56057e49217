"""Review report: compare a base revision with the workspace, as one self-contained folder.

    python -m tools.review --base main [--out review] [--ci]

Writes <out>/report.md (metrics and params diff tables, a paired test of the two revisions'
test-set predictions, every dvc.yaml plot for both revisions as static PNGs),
<out>/images/*.png, and <out>/html/index.html, the interactive `dvc plots diff` page with
Vega inlined so it renders with no internet. The base may be a branch, tag, commit or
experiment name. Everything compared is committed to git (metrics, params, plots): nothing is
reproduced or trained. Needs the npm packages in package.json (`make setup-review`) for the
offline HTML template.

--ci (make ci-review) also checks that the workspace's committed results belong to its code:
a stage whose code, params, command or upstream data differ from dvc.lock, or whose committed
outputs do not match it, is stale; the report then starts with a "stale results" notice
naming the stages and the command exits 1. Outputs merely absent from this machine's DVC
cache (a fresh clone) are not stale. With a DVC remote configured it also lists outputs that
were never pushed (`dvc status --cloud`; nothing is downloaded).
"""

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import vl_convert

from emotion.errors import PipelineError, exit_on_error, first_line
from emotion.files import user_folder, user_folder_output
from emotion.paths import TEST_PREDICTIONS
from tools import remote
from tools.commands import dvc, git
from tools.compare import compare, markdown, read_predictions, why_not_comparable

if TYPE_CHECKING:  # dvc is imported when the queries run
    from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]
VEGA_SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
                "vega-embed/build/vega-embed.min.js")
NO_CHANGES = "No metric changed: the workspace's metrics equal those of"
STALE = "Stale results: run `dvc repro` and commit `dvc.lock`, `metrics/`, `plots/`."
# Left in every report folder: --out replaces an existing folder only if it holds this.
REPORT_MARKER = ".review-report"
# Statuses of `dvc status` that mean "not on this machine", not "changed".
ABSENT = {"deleted", "not in cache"}


def stale_stages(status: dict) -> dict[str, list[str]]:
    """The stages of a `dvc status --json` whose results do not belong to the workspace's
    code, params and data, each with its reasons; absent outputs and deps are not reasons."""
    stale = {}
    for stage, entries in status.items():
        reasons = []
        for entry in entries:
            if isinstance(entry, str):
                reasons.append(entry)
                continue
            for kind, changes in entry.items():
                for path, change in changes.items():
                    if isinstance(change, dict):  # params: {name: "modified" | "new" | ...}
                        reasons += [f"param {name} {what}" for name, what in change.items()]
                    elif change not in ABSENT:
                        noun = "output" if kind == "changed outs" else "dependency"
                        reasons.append(f"{noun} {path} {change}")
        if reasons:
            stale[stage] = reasons
    return stale


@contextlib.contextmanager
def dvc_queries() -> Iterator["Repo"]:
    """The DVC repository of the working directory, for the queries whose answers the report
    reads (status, cloud status, metrics and params diffs): the calls `dvc status --json`,
    `dvc metrics diff --json` etc. make, without a dvc process each. A DVC error is one line."""
    from dvc.exceptions import DvcException

    try:
        with remote.open_repo() as repo:
            yield repo
    except DvcException as error:
        raise PipelineError(f"dvc: {first_line(error)}") from None


def unpushed_outputs(repo: "Repo") -> list[str]:
    """Outputs recorded in dvc.lock that the default remote lacks (none without a remote);
    a PipelineError if the remote cannot be asked (e.g. no credentials on this machine)."""
    if not repo.config["remote"]:
        return []
    remote.check(repo=repo)  # one line naming the remote and its problem (server, keys, bucket)
    status = repo.status(cloud=True)  # what `dvc status --cloud --json` prints
    paths = [path for path, what in status.items() if what in ("new", "missing")]
    return sorted(path for path in paths  # outputs, not each file inside a folder output
                  if not any(path.startswith(f"{other}/") for other in paths))


def commit_of(revision: str) -> str:
    """A git commit for a branch, tag, commit or DVC experiment name."""
    for candidate in (revision, *_experiment_refs(revision)):
        result = subprocess.run(["git", "rev-parse", "--verify", "--quiet",
                                 f"{candidate}^{{commit}}"], text=True, capture_output=True)
        if result.returncode == 0:
            return result.stdout.strip()
    raise PipelineError(f"unknown revision {revision!r}")


def _experiment_refs(name: str) -> list[str]:
    refs = git("for-each-ref", "--format=%(refname)", "refs/exps").split()
    return [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]


def paired_section(base: str) -> list[str]:
    """Markdown of the paired test of BASE's and the workspace's test-set predictions."""
    lines = ["## Is the change real? (test split, paired)", ""]
    new_path = TEST_PREDICTIONS
    base_csv = subprocess.run(["git", "show", f"{commit_of(base)}:{TEST_PREDICTIONS}"], text=True,
                              capture_output=True)
    if not new_path.exists() or base_csv.returncode != 0:
        side = "the workspace" if not new_path.exists() else f"`{base}`"
        return lines + [f"Not compared: {side} has no `{TEST_PREDICTIONS}`.", ""]
    old, new = read_predictions(base_csv.stdout), read_predictions(new_path.read_text())
    problem = why_not_comparable(old, new)
    if problem:
        return lines + [f"Not compared: {problem}, so the predictions cannot be paired.", ""]
    return lines + markdown(compare(old, new), base, "workspace")


def offline_template(node_modules: Path) -> str:
    """An HTML template for `dvc plots --html-template` with Vega, Vega-Lite and Vega-Embed
    inlined (no `{scripts}` placeholder, so dvc adds no CDN script tags)."""
    scripts = []
    for script in VEGA_SCRIPTS:
        path = node_modules / script
        if not path.exists():
            raise PipelineError(f"{path} not found: run `npm ci` (or `make setup`) first")
        scripts.append(f"<script>{path.read_text(encoding='utf8')}</script>")
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>Model review: plots</title>\n" + "\n".join(scripts) +
            "\n<style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>"
            "\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def render_plots(base: str, out: Path) -> list[str]:
    """Markdown for every plot of dvc.yaml in both revisions; PNGs go to out/images."""
    images = out / "images"
    images.mkdir()
    with tempfile.TemporaryDirectory() as scratch:  # where dvc copies the image plots
        plots = json.loads(dvc("plots", "diff", base, "--json", "-o", scratch))
        return plot_sections(plots, base, images)


def plot_sections(plots: dict, base: str, images: Path) -> list[str]:
    lines = []
    for name, entries in plots.get("data", {}).items():
        vega = [entry for entry in entries if entry["type"] == "vega"]
        for entry in vega:
            png = images / f"{slug(name)}.png"
            png.write_bytes(vl_convert.vegalite_to_png(entry["content"], scale=1.5))
            lines += [f"### {name}", "", f"![{name}](images/{png.name})", ""]
        pictures = {entry["revisions"][0]: Path(entry["url"]) for entry in entries
                    if entry["type"] == "image"}
        if pictures:  # side by side, base first
            revisions = sorted(pictures, key=lambda revision: revision != base)
            cells = []
            for revision in revisions:
                source = pictures[revision]
                copy = images / f"{slug(Path(name).stem)}-{slug(revision)}{source.suffix}"
                shutil.copyfile(source, copy)
                cells.append(f"![{revision}](images/{copy.name})")
            lines += [f"### {name}", "", "| " + " | ".join(revisions) + " |",
                      "|" + "---|" * len(revisions), "| " + " | ".join(cells) + " |", ""]
    missing = [f"- {error.get('name')} (in {error.get('rev')})"
               for error in plots.get("errors", [])]
    if missing:
        lines += ["### Plots missing in a revision", "", *missing, ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare a base revision with the workspace.")
    parser.add_argument("--base", required=True, help="branch, tag, commit or experiment")
    parser.add_argument("--out", default="review", help="report folder (replaced if an "
                        "earlier review wrote it; any other existing path is an error)")
    parser.add_argument("--ci", action="store_true",
                        help="also check that the results belong to the code; exit 1 if not")
    args = parser.parse_args()

    user_folder(args.out, REPORT_MARKER)  # errors before anything is written or asked
    commit_of(args.base)
    stale, unpushed, remote_problem = {}, [], None
    with dvc_queries() as repo:
        if args.ci:
            stale = stale_stages(repo.status())
            try:
                unpushed = unpushed_outputs(repo)
            except PipelineError as error:
                remote_problem = str(error)
        changed_metrics = repo.metrics.diff(a_rev=args.base).get("diff")
        changed_params = repo.params.diff(a_rev=args.base).get("diff")
    metrics_table = dvc("metrics", "diff", args.base, "--all", "--md", "--precision", "4")
    params_table = dvc("params", "diff", args.base, "--md")

    with user_folder_output(args.out, REPORT_MARKER) as out:
        out.mkdir()
        template = out / "offline-template.html"
        template.write_text(offline_template(ROOT / "node_modules"), encoding="utf8")
        dvc("plots", "diff", args.base, "-o", str(out / "html"),
            "--html-template", str(template))
        template.unlink()
        report = [f"# Model review: `{args.base}` → workspace", ""]
        if stale:
            report += [f"> **{STALE}**", ">", "> Stale stages:"]
            report += [f"> - `{stage}`: {', '.join(reasons)}" for stage, reasons in stale.items()]
            report += [""]
        if unpushed:
            report += ["> Not pushed to the DVC remote (`dvc push`): "
                       + ", ".join(f"`{path}`" for path in unpushed), ""]
        if remote_problem:
            report += [f"> Could not check the DVC remote: {remote_problem}", ""]
        if not changed_metrics:
            report += [f"{NO_CHANGES} `{args.base}`.", ""]
        report += ["## Metrics", "", metrics_table.strip() or "No metrics found.", "",
                   "## Params", "",
                   params_table.strip() if changed_params else "No param changed.", ""]
        report += paired_section(args.base)
        report += ["## Plots", "",
                   "Interactive version (works offline): `html/index.html`.", ""]
        report += render_plots(args.base, out)
        (out / "report.md").write_text("\n".join(report) + "\n", encoding="utf8")
    print(f"wrote {args.out}/report.md and {args.out}/html/index.html")
    if stale:
        raise PipelineError(f"{STALE} Stale stages: {', '.join(stale)} (see {args.out}/report.md)")


if __name__ == "__main__":
    exit_on_error(main)

"""Review report: compare a base revision with the workspace, as one self-contained folder.

    python -m tools.review --base main [--out review]

Writes <out>/report.md (metrics and params diff tables, every dvc.yaml plot for both
revisions as static PNGs), <out>/images/*.png, and <out>/html/index.html, the interactive
`dvc plots diff` page with Vega inlined so it renders with no internet. The base may be a
branch, tag, commit or experiment name. Needs the npm packages in package.json
(`npm ci`, done by `make setup`) for the offline HTML template.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import vl_convert

from emotion.errors import PipelineError, exit_on_error
from emotion.files import atomic_output

ROOT = Path(__file__).resolve().parents[1]
VEGA_SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
                "vega-embed/build/vega-embed.min.js")
NO_CHANGES = "No changes: the workspace's metrics and params equal those of"


def dvc(*args: str) -> str:
    """Run a dvc command (the one installed beside this Python); one-line error on failure."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], text=True,
                            capture_output=True)
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()
        raise PipelineError(f"dvc {' '.join(args[:2])}: {lines[-1]}")
    return result.stdout


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
    parser.add_argument("--out", default="review", help="report folder (replaced)")
    args = parser.parse_args()

    changed_metrics = json.loads(dvc("metrics", "diff", args.base, "--json") or "{}")
    changed_params = json.loads(dvc("params", "diff", args.base, "--json") or "{}")
    metrics_table = dvc("metrics", "diff", args.base, "--all", "--md", "--precision", "4")
    params_table = dvc("params", "diff", args.base, "--md")

    with atomic_output(args.out) as out:
        out.mkdir()
        template = out / "offline-template.html"
        template.write_text(offline_template(ROOT / "node_modules"), encoding="utf8")
        dvc("plots", "diff", args.base, "-o", str(out / "html"),
            "--html-template", str(template))
        template.unlink()
        report = [f"# Model review: `{args.base}` → workspace", ""]
        if not changed_metrics and not changed_params:
            report += [f"{NO_CHANGES} `{args.base}`.", ""]
        report += ["## Metrics", "", metrics_table.strip() or "No metrics found.", "",
                   "## Params", "", params_table.strip() or "No param changes.", "",
                   "## Plots", "",
                   "Interactive version (works offline): `html/index.html`.", ""]
        report += render_plots(args.base, out)
        (out / "report.md").write_text("\n".join(report) + "\n", encoding="utf8")
    print(f"wrote {args.out}/report.md and {args.out}/html/index.html")


if __name__ == "__main__":
    exit_on_error(main)

"""Large inputs through the real `emotion-predict --input`: peak memory (RSS) and texts/s
for a file of --lines lines (the test split repeated) against a 2,000-line one, as .txt and
.csv, on the default backend (models/onnx). Input is read, labelled and written in chunks of
1,024 texts, so the peak should not grow with the file. Figures, not assertions.

Usage (from the repo root, after `dvc repro`): python -m benchmarks.large_input
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from emotion.hardware import cpu_model, speed_flags
from emotion.paths import RAW_DIR

COMMAND = shutil.which("emotion-predict", path=str(Path(sys.executable).parent))


def write_input(path: Path, texts: list[str], lines: int) -> None:
    repeated = (texts[i % len(texts)] for i in range(lines))
    with path.open("w", encoding="utf-8", newline="") as stream:
        if path.suffix == ".csv":
            writer = csv.writer(stream)
            writer.writerow(["text"])
            writer.writerows([text] for text in repeated)
        else:
            stream.writelines(f"{text}\n" for text in repeated)


def run(path: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of emotion-predict labelling `path` into `out`."""
    start = time.perf_counter()
    process = subprocess.Popen([COMMAND, "--input", str(path), "--output", str(out),
                                "--no-progress"], stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"emotion-predict failed on {path}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}]")
    texts = pq.read_table(RAW_DIR / "test.parquet", columns=["text"]).column(0).to_pylist()
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".txt", ".csv"):
            for lines in (2_000, args.lines):
                path = Path(folder) / f"in-{lines}{suffix}"
                write_input(path, texts, lines)
                seconds, rss = run(path, Path(folder) / "out.jsonl")
                print(f"{suffix:<5} {lines:>9,} lines: peak RSS {rss:7.1f} MiB, {seconds:7.1f} s, "
                      f"{lines / seconds:6.1f} texts/s", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()

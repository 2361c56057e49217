"""The corpus job against one process, on the same texts in one run: the test split repeated
to --texts texts (100,000 by default) as --partitions parquet files, labelled by
`emotion-label` on a local Dask cluster (--workers processes of --threads threads each) and,
all in one parquet file, by `emotion-predict --input` (one process). Whole commands timed
(start-up included), each once, one after the other, with the machine otherwise idle. Prints
the CPU, texts/s of each and the ratio; a projection to N machines is arithmetic on these,
not a measurement. Figures, not assertions.

Usage (after `dvc repro publish`): python -m benchmarks.label_speed [--texts 100000]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from emotion.data import read_split
from emotion.hardware import cpu_model, speed_flags
from emotion.paths import RAW_DIR

BIN = Path(sys.executable).parent


def timed(command: list) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} [{' '.join(speed_flags())}], {os.cpu_count()} logical CPUs")
    split = list(read_split(RAW_DIR, "test")["text"])
    texts = (split * (args.texts // len(split) + 1))[:args.texts]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        size = -(-len(texts) // args.partitions)
        (root / "in").mkdir()
        for index in range(args.partitions):
            chunk = texts[index * size:(index + 1) * size]
            pq.write_table(pa.table({"id": range(index * size, index * size + len(chunk)),
                                     "text": chunk}), root / f"in/part{index:03d}.parquet")
        pq.write_table(pa.table({"id": range(len(texts)), "text": texts}), root / "all.parquet")
        dask = timed([BIN / "emotion-label", "--no-progress", root / "in", "--output",
                      root / "out", "--workers", str(args.workers), "--threads-per-worker",
                      str(args.threads)])
        single = timed([BIN / "emotion-predict", "--no-progress", "--input",
                        root / "all.parquet", "--format", "csv", "--output",
                        root / "all.csv"])
        shutil.rmtree(root / "out")
    print(f"{len(texts):,} texts, {args.partitions} partitions")
    print(f"emotion-label, local cluster of {args.workers}x{args.threads}: {dask:7.1f} s "
          f"{len(texts) / dask:8.1f} texts/s")
    print(f"emotion-predict --input, one process:   {single:7.1f} s "
          f"{len(texts) / single:8.1f} texts/s")
    print(f"Dask / one process: {single / dask:.2f}x")


if __name__ == "__main__":
    main()

"""`emotion-label`: label a parquet dataset (local or s3://) on Dask, one output file per input
file, resumable (emotion.prediction.corpus).

    emotion-label tweets/ --output labelled/ --columns id,created_at
    emotion-label 's3://bucket/tweets/*.parquet' --output s3://bucket/labelled/ --workers 4
    emotion-label tweets/ --output labelled/ --scheduler tcp://scheduler:8786
"""

from __future__ import annotations

import argparse
import json
import sys

from emotion.errors import PipelineError
from emotion.paths import ONNX_DIR
from emotion.prediction.backend import DEFAULT_BATCH_SIZE
from emotion.prediction.runtime_settings import RUNTIMES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="emotion-label", description="Label every text of a parquet dataset (a folder, "
        "a glob or files; local or s3://) on a Dask cluster: one output parquet file per "
        "input file, with the columns kept, label, probability and one prob_<label> column "
        "per label. A rerun skips the files already labelled by the same model.")
    parser.add_argument("input", nargs="+", metavar="INPUT",
                        help="parquet files, a folder of them or a glob (quoted)")
    parser.add_argument("-o", "--output", required=True, metavar="FOLDER",
                        help="the output folder (local or s3://)")
    parser.add_argument("-m", "--model", default=str(ONNX_DIR), metavar="DIR",
                        help="the ONNX runtime folder, at the same path on every worker, or "
                        "an s3:// URL (downloaded once per machine); default: %(default)s")
    parser.add_argument("--runtime", choices=tuple(RUNTIMES),
                        help="the engine and precision; default: as emotion-predict chooses, "
                        "on each worker")
    parser.add_argument("--text-column", default="text", help="default: %(default)s")
    parser.add_argument("--columns", type=lambda value: [c for c in value.split(",") if c],
                        metavar="NAME,...", help="the input columns to keep; default: all")
    parser.add_argument("--min-prob", type=float, metavar="P",
                        help="a null label where the top probability is below P")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the local cluster; default: %(default)s")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="threads of each worker, and of its model; default: %(default)s")
    parser.add_argument("--memory-limit", default="auto",
                        help="memory of each local worker (Dask's, e.g. 2GiB); default: auto")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on this existing Dask cluster instead of a local one")
    parser.add_argument("-b", "--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--storage-options", type=json.loads, default={}, metavar="JSON",
                        help='fsspec options, e.g. \'{"endpoint_url": "https://s3.example.com"}\''
                        "; credentials as boto takes them (AWS_* variables, ~/.aws)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.min_prob is not None and not 0 <= args.min_prob <= 1:
        parser.error(f"--min-prob must be in [0, 1], got {args.min_prob}")
    for name in ("workers", "threads_per_worker", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not isinstance(args.storage_options, dict):
        parser.error("--storage-options must be a JSON object")
    return args


def main(argv: list[str] | None = None) -> None:
    """The console entry point."""
    args = parse_args(argv)
    try:
        from emotion.prediction.corpus import label_dataset
    except ImportError as error:
        print(f"error: emotion-label needs the cluster extra (pip install '.[cluster]'): "
              f"{error}", file=sys.stderr)
        sys.exit(1)
    try:
        summary = label_dataset(
            args.input if len(args.input) > 1 else args.input[0], args.output,
            model=args.model, workers=args.workers,
            threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit,
            scheduler=args.scheduler, columns=args.columns, text_column=args.text_column,
            min_prob=args.min_prob, runtime=args.runtime, batch_size=args.batch_size,
            storage_options=args.storage_options, progress=not args.no_progress)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    for failure in summary.failures:
        print(f"error: {failure}", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    sys.exit(1 if summary.failures else 0)


if __name__ == "__main__":
    main()

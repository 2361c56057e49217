"""Stage download: fetch the dataset (Hub id or local folder), validate it, write data/raw/.

Writes data/raw/{train,validation,test}.parquet with columns text (str) and label
(a ClassLabel, so the label names travel with the data).
"""

from emotion.process import start_stage

if __name__ == "__main__":  # before anything imports datasets
    start_stage()

import json
from pathlib import Path

import datasets

from emotion.errors import PipelineError, exit_on_error, first_line
from emotion.files import atomic_output
from emotion.params import load_params, param
from emotion.paths import RAW_DIR, SPLITS


def resolve_source(dataset: str, revision: str) -> Path:
    """A local folder as is; otherwise a Hub dataset id, resolved to its snapshot folder."""
    if Path(dataset).is_dir():
        return Path(dataset)
    if dataset.startswith((".", "/")) or Path(dataset).exists():
        raise PipelineError(f"param data.dataset: folder {dataset} not found")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(dataset, repo_type="dataset", revision=revision))
    except (HFValidationError, OSError) as error:
        raise PipelineError(
            f"param data.dataset: cannot get Hub dataset {dataset!r} at revision {revision!r}: "
            f"{first_line(error)}"
        ) from None


def check_label_names(source: Path, label_column: str) -> None:
    """The ClassLabel names each parquet file declares must be unique and the same in every
    file: `datasets` would silently give every split the first file's names."""
    import pyarrow.parquet as pq

    declared = {}
    for file in sorted(source.rglob("*.parquet")):
        try:
            metadata = pq.read_schema(file).metadata or {}
            features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get(
                "features", {})
        except Exception as error:  # pyarrow raises several types for damaged files
            raise PipelineError(f"{file}: not a readable parquet file ({first_line(error)})"
                                ) from None
        label = features.get(label_column) or {}
        if label.get("_type") == "ClassLabel":
            declared[file.relative_to(source)] = label.get("names", [])
    for file, names in declared.items():
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise PipelineError(f"{source / file}: label name(s) {', '.join(repeated)} "
                                "declared more than once")
    if len({tuple(names) for names in declared.values()}) > 1:
        listing = "; ".join(f"{file}: {names}" for file, names in declared.items())
        raise PipelineError(f"the data files declare different label names ({listing})")


def load_splits(source: Path, config: str | None) -> datasets.DatasetDict:
    """Load the train/validation/test splits of a dataset folder."""
    try:
        loaded = datasets.load_dataset(str(source), name=config, keep_in_memory=True)
    except Exception as error:  # datasets and pyarrow raise many types for bad files
        raise PipelineError(
            f"cannot load {source} (data.config={config!r}): {first_line(error)}"
        ) from None
    missing = [split for split in SPLITS if split not in loaded]
    if missing:
        raise PipelineError(
            f"dataset {source} has no split(s) {', '.join(missing)} (found: {', '.join(loaded)})"
        )
    return datasets.DatasetDict({split: loaded[split] for split in SPLITS})


def standardise(dataset: datasets.Dataset, split: str, text_column: str, label_column: str):
    """Validate one split and return it with exactly the columns text and label."""
    for key, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in dataset.column_names:
            raise PipelineError(
                f"param data.{key}: split '{split}' has no column '{column}' "
                f"(columns: {', '.join(dataset.column_names)})"
            )
    label_feature = dataset.features[label_column]
    if not isinstance(label_feature, datasets.ClassLabel):
        raise PipelineError(
            f"split '{split}': column '{label_column}' must be a ClassLabel with label names, "
            f"got {label_feature}"
        )
    names = label_feature.names
    if dataset.num_rows == 0:
        raise PipelineError(f"split '{split}' has no rows")
    for row, (text, label) in enumerate(zip(dataset[text_column], dataset[label_column])):
        if not isinstance(text, str) or not text.strip():
            raise PipelineError(f"split '{split}' row {row}: empty text in column '{text_column}'")
        if not 0 <= label < len(names):
            raise PipelineError(
                f"split '{split}' row {row}: label {label} is outside the {len(names)} "
                f"declared names {names}"
            )
    features = datasets.Features({"text": datasets.Value("string"), "label": label_feature})
    dataset = dataset.select_columns([text_column, label_column])
    dataset = dataset.rename_columns({text_column: "text", label_column: "label"})
    return dataset.cast(features)


def main() -> None:
    datasets.disable_progress_bars()  # imported before emotion.data could switch them off
    params = load_params("data")
    dataset = param(params, "data", "dataset", str)
    config = param(params, "data", "config", (str, type(None)))
    revision = param(params, "data", "revision", str)
    text_column = param(params, "data", "text_column", str)
    label_column = param(params, "data", "label_column", str)

    source = resolve_source(dataset, revision)
    check_label_names(source, label_column)
    splits = load_splits(source, config)
    splits = {name: standardise(split, name, text_column, label_column)
              for name, split in splits.items()}
    names = [splits[name].features["label"].names for name in SPLITS]
    if any(other != names[0] for other in names):
        raise PipelineError(f"splits declare different label names: {names}")

    with atomic_output(RAW_DIR) as out:
        out.mkdir()
        for name, split in splits.items():
            split.to_parquet(str(out / f"{name}.parquet"))
            print(f"{name}: {split.num_rows} rows")
    print(f"labels: {', '.join(names[0])}")


if __name__ == "__main__":
    exit_on_error(main)

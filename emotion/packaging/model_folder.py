"""The published model folder (models/emotion): the trained model with its temperature folded
into the classifier layer, so every consumer of the folder (emotion.predict, the exports,
transformers' pipeline()) gets calibrated probabilities with no extra file to carry.

softmax(logits / T) is the softmax of the same Dense layer with kernel / T and bias / T: the
two datasets of tf_model.h5 (Keras's HDF5 weights, written by save_pretrained) are divided
by T in place, in float32, with h5py. config.json records the temperature (`temperature`,
informational: the weights already apply it); a folder without it has T = 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from emotion.errors import PipelineError

WEIGHTS_FILE = "tf_model.h5"
# The classifier head's datasets, as transformers' TF heads name them.
HEAD_SUFFIXES = ("/classifier/kernel:0", "/classifier/bias:0")


def head_datasets(weights: Path) -> list[str]:
    """The names of the classifier layer's kernel and bias datasets in `weights`."""
    import h5py

    names = []
    with h5py.File(weights, "r") as file:
        file.visititems(lambda name, item: names.append(name) if isinstance(
            item, h5py.Dataset) and name.endswith(HEAD_SUFFIXES) else None)
    if sorted(name.rsplit("/", 1)[-1] for name in names) != ["bias:0", "kernel:0"]:
        raise PipelineError(f"{weights}: expected one classifier kernel and bias, found "
                            f"{names or 'none'}")
    return names


def copy_calibrated(source: Path, target: Path, temperature: float) -> None:
    """Copy the model folder `source` to `target` with `temperature` folded into the
    classifier layer and recorded in config.json."""
    if not (source / WEIGHTS_FILE).is_file() or not (source / "config.json").is_file():
        raise PipelineError(f"{source}: no trained model there ({WEIGHTS_FILE} and "
                            "config.json): run `dvc repro train` first")
    if not temperature > 0:
        raise PipelineError(f"temperature must be positive, got {temperature!r}")
    shutil.copytree(source, target)
    import h5py

    with h5py.File(target / WEIGHTS_FILE, "r+") as file:
        for name in head_datasets(target / WEIGHTS_FILE):
            values = file[name][...]
            file[name][...] = (values / np.float32(temperature)).astype(values.dtype)
    config = json.loads((target / "config.json").read_text())
    config["temperature"] = temperature
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def folded_temperature(folder: Path) -> float:
    """The temperature a published model folder's weights apply (1.0 when it has none)."""
    try:
        return float(json.loads((Path(folder) / "config.json").read_text()).get(
            "temperature", 1.0))
    except (OSError, ValueError, AttributeError) as error:
        raise PipelineError(f"{folder}/config.json: cannot read it ({error})") from None

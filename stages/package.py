"""Stage package: the model folder users get, calibrated and with its model card (stage
publish copies it to models/emotion/, its card completed with the behaviour tests).

Copies models/trained/ to models/build/emotion/ with the temperature that stage evaluate fitted on
the validation split folded into the classifier layer (emotion.packaging.model_folder; 1.0 when
evaluate.temperature_scaling is off), and writes its README.md: a Hugging Face model card
from metrics/evaluate.json, metrics/classification_report.json, metrics/train.json and the
params (emotion.packaging.model_card). The folder is self-contained: copied or published, it
predicts what the pipeline measured, with transformers' pipeline() too.
"""

from emotion.process import start_stage

if __name__ == "__main__":  # before anything imports datasets
    start_stage()

from pathlib import Path

from emotion.errors import exit_on_error
from emotion.files import atomic_output, read_json
from emotion.packaging.model_card import render
from emotion.packaging.model_folder import copy_calibrated
from emotion.packaging.publish import PACKAGE_BUILD
from emotion.params import load_params, model_source
from emotion.paths import (
    CLASSIFICATION_REPORT,
    EVALUATE_METRICS,
    MODEL_DIR,
    TRAIN_METRICS,
    TRAINED_DIR,
)

METRICS = {"evaluate": EVALUATE_METRICS, "report": CLASSIFICATION_REPORT,
           "train_metrics": TRAIN_METRICS}


def main() -> None:
    facts = {key: read_json(path, "run `dvc repro`") for key, path in METRICS.items()}
    config = read_json(TRAINED_DIR / "config.json", "run `dvc repro`")
    data = load_params("data")
    hub = not Path(data["dataset"]).is_dir()  # a local folder has no Hub config or revision
    facts.update(
        name=MODEL_DIR.name,
        labels=[config["id2label"][str(i)] for i in range(len(config["id2label"]))],
        train=load_params("train"),
        max_length=load_params("model")["max_length"],
        dataset=data["dataset"], dataset_config=data.get("config") if hub else None,
        dataset_revision=data.get("revision") if hub else None)
    facts["checkpoint"], facts["checkpoint_revision"] = model_source()
    temperature = facts["evaluate"]["calibration"]["temperature"]
    with atomic_output(PACKAGE_BUILD) as out:
        copy_calibrated(TRAINED_DIR, out, temperature)
        (out / "README.md").write_text(render(facts))
    print(f"{PACKAGE_BUILD}: {TRAINED_DIR} with temperature {temperature} folded in, and its "
          f"model card (README.md); stage publish makes it {MODEL_DIR}")


if __name__ == "__main__":
    exit_on_error(main)

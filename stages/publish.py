"""Stage publish: the model folders users get, models/emotion and models/onnx.

Copies the builds of `package` (models/build/emotion) and `onnx` (models/build/onnx) into
place, each model card completed with a Behaviour section written from
metrics/behaviour.json and plots/behaviour/failures.csv
(emotion.packaging.model_card.render_behaviour), so that the cards
describe how the published model behaves, not only how accurate it is. Both folders are
moved into place together, or neither.
"""

from emotion.process import start_stage

if __name__ == "__main__":
    start_stage()

import csv

from emotion.errors import exit_on_error
from emotion.files import atomic_outputs, read_json
from emotion.packaging.model_card import render_behaviour
from emotion.packaging.publish import ONNX_BUILD, PACKAGE_BUILD, publish
from emotion.paths import MODEL_DIR, ONNX_DIR

BEHAVIOUR_METRICS = "metrics/behaviour.json"
FAILURES = "plots/behaviour/failures.csv"


def main() -> None:
    with open(FAILURES, newline="", encoding="utf-8") as file:
        failing = list(csv.DictReader(file))
    section = render_behaviour(read_json(BEHAVIOUR_METRICS, "run `dvc repro behaviour`"),
                               failing)
    with atomic_outputs(MODEL_DIR, ONNX_DIR) as (model_out, runtime_out):
        publish(PACKAGE_BUILD, model_out, section)
        publish(ONNX_BUILD, runtime_out, section)
    print(f"{MODEL_DIR}, {ONNX_DIR}: published from {PACKAGE_BUILD} and {ONNX_BUILD}, "
          "their cards with the behaviour tests' results")


if __name__ == "__main__":
    exit_on_error(main)

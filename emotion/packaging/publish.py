"""The published model folders and the build folders they are made from. `package` and
`onnx` write models/build/emotion and models/build/onnx (each with its model card); the
`behaviour` stage tests the runtime build; `publish` copies both builds into models/emotion
and models/onnx, their cards completed with the Behaviour section written from
metrics/behaviour.json. (A card must be written after the behaviour stage, which needs the
runtime folder: a later stage cannot write into another stage's output folder, and DVC cannot
take a folder of several outputs as a `dvc pull` target, iterative/dvc#10286.)"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_BUILD = Path("models/build/emotion")
ONNX_BUILD = Path("models/build/onnx")
CARD = "README.md"


def publish(build: Path, folder: Path, behaviour_section: str) -> None:
    """A copy of the build folder at `folder` (new), its card completed with the section."""
    shutil.copytree(build, folder)
    card = folder / CARD
    card.write_text(card.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
                    + behaviour_section.rstrip("\n") + "\n", encoding="utf-8")

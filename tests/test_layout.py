"""The library's layout: each stage's code deps in dvc.yaml cover every project module it
imports, directly or not (the train stage's resume fingerprint hashes exactly these files, so
a missing one would resume across a code change), and the light install stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file of project module `name` (emotion.x.y or stages.x), relative to ROOT."""
    path = Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The project modules a file imports (anywhere in it: lazy imports count), with the
    packages each import runs the __init__ of."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    project = {name for name in names if name.split(".")[0] in ("emotion", "stages")}
    return {".".join(name.split(".")[:i]) for name in project
            for i in range(1, name.count(".") + 2)}


def has_code(path: Path) -> bool:
    """Whether a file holds more than a docstring (a docstring-only __init__ runs nothing)."""
    body = ast.parse((ROOT / path).read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in body)


def code_closure(path: Path) -> set[Path]:
    """Every project file `path` runs when imported, itself included."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [file for name in imported_modules(current) if (file := module_file(name))]
    return {file for file in seen if has_code(file)}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_declares_every_project_module_it_imports(stage):
    command = STAGES[stage]["cmd"]
    assert command == f"python -m stages.{stage}"
    deps = [Path(dep) for dep in STAGES[stage]["deps"]]
    code = code_closure(Path(f"stages/{stage}.py"))
    assert len(code) > 3
    missing = sorted(str(file) for file in code
                     if not any(file == dep or dep in file.parents for dep in deps))
    assert missing == [], f"{stage}: add to its deps in dvc.yaml"
    # And nothing stale: every declared file dep (.py) exists and is run by the stage.
    declared = {dep for dep in deps if dep.suffix == ".py"}
    assert declared <= code, f"{stage}: deps it does not import: {sorted(declared - code)}"


def test_the_closure_follows_imports_through_packages():
    """The closure walks lazy imports and package __init__s: the train stage reaches the
    checkpoints through emotion.training, and the TensorFlow backend through the lazy import
    of TextClassifier."""
    train = code_closure(Path("stages/train.py"))
    assert {Path("emotion/training/checkpoints.py"), Path("emotion/training/cluster.py"),
            Path("emotion/process.py"), Path("emotion/paths.py")} <= train
    evaluate = code_closure(Path("stages/evaluate.py"))
    assert Path("emotion/tensorflow_backend.py") in evaluate
    assert Path("emotion/__init__.py") not in evaluate  # a docstring, no code


def test_the_prediction_package_and_an_onnx_classifier_load_no_training_stack(dvc_repo):
    """In the full install, importing the prediction package and constructing an ONNX
    TextClassifier leaves no TensorFlow, transformers, SciPy or pandas in sys.modules, no
    Dask (the corpus job's), and OpenVINO only where the classifier runs on it."""
    code = ("import sys, emotion.prediction, emotion.prediction.cli; "
            "from emotion.predict import TextClassifier; "
            f"c = TextClassifier({str(dvc_repo[0] / 'models/onnx')!r}); "
            "c.predict(['i am glad']); print(c.runtime); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tensorflow', 'transformers', 'scipy', 'pandas', 'sklearn', 'tf_keras', "
            "'dask', 'distributed', 'openvino'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    runtime, loaded = result.stdout.split("\n")[:2]
    assert loaded == ("['openvino']" if runtime.startswith("openvino") else "[]"), runtime

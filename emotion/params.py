"""Reading params.yaml: one section at a time, every value checked, errors naming the param."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from emotion.errors import PipelineError, first_line

PARAMS_FILE = "params.yaml"


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats without a dot, e.g. 3e-05: what
    `dvc exp run -S train.learning_rate=3e-5` writes, and a string to YAML 1.1."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_params(section: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one section of params.yaml."""
    try:
        params = yaml.load(Path(path).read_text(), Loader=_ParamsLoader)
    except FileNotFoundError:
        raise PipelineError(f"params file {path} not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}{where}: not valid YAML: "
                            f"{getattr(error, 'problem', None) or first_line(error)}") from None
    if not isinstance(params, dict) or not isinstance(params.get(section), dict):
        raise PipelineError(f"{path}: missing section '{section}'")
    return params[section]


def param(params: dict[str, Any], section: str, key: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch params[key], checking its type; errors name the param as section.key."""
    if key not in params:
        raise PipelineError(f"param {section}.{key} is missing")
    value = params[key]
    if isinstance(value, bool) and kind is not bool:
        raise PipelineError(f"param {section}.{key} must be {_kind_name(kind)}, got {value!r}")
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise PipelineError(f"param {section}.{key} must be {_kind_name(kind)}, got {value!r}")
    return value


def positive(params: dict[str, Any], section: str, key: str, kind: type) -> Any:
    """Fetch a number param that must be > 0."""
    value = param(params, section, key, kind)
    if value <= 0:
        raise PipelineError(f"param {section}.{key} must be > 0, got {value!r}")
    return value


def one_of(params: dict[str, Any], section: str, key: str, allowed: Sequence[str]) -> str:
    """Fetch a string param that must be one of `allowed`."""
    value = param(params, section, key, str)
    if value not in allowed:
        raise PipelineError(f"param {section}.{key} must be one of {', '.join(allowed)}, "
                            f"got {value!r}")
    return value


def probability_list(params: dict[str, Any], section: str, key: str) -> list[float]:
    """Fetch a non-empty list param of numbers in [0, 1] (e.g. --min-prob thresholds)."""
    values = param(params, section, key, list)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                         or not 0 <= v <= 1 for v in values):
        raise PipelineError(f"param {section}.{key} must be numbers in [0, 1], got {values}")
    return values


def model_source(path: str | Path = PARAMS_FILE) -> tuple[str, str | None]:
    """model.checkpoint (a Hub id or a local folder) and model.revision (a Hub commit, branch
    or tag; null for the latest; ignored for a local folder)."""
    params = load_params("model", path)
    return (param(params, "model", "checkpoint", str),
            param(params, "model", "revision", (str, type(None))))


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", list: "a list",
                        bool: "true/false", type(None): "null"}.get(k, k.__name__) for k in kinds)

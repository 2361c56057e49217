"""The behaviour suite: tests.yaml (the tests) and lexicons.yaml (the words their templates
draw from), read and checked against the model's labels, each problem a PipelineError naming
the file and line; then expanded into cases, deterministically (templates in order, words in
the cartesian order of their placeholders; invariance texts sampled with the seed).

A case is what one check needs: MFT one text and its expected (or forbidden) label; INV an
original and a perturbed text; DIR a base and a changed text and the label watched; OOS one
text."""

from __future__ import annotations

import itertools
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from emotion.behaviour.perturb import NEEDS, PERTURBATIONS
from emotion.errors import PipelineError, first_line

TYPES = ("MFT", "INV", "DIR", "OOS")
FIELDS = {  # what each type requires besides name, capability, type and intent
    "MFT": ["templates"], "INV": ["perturbation"], "DIR": ["pairs", "direction"],
    "OOS": ["templates"]}


@dataclass(frozen=True)
class Test:
    name: str
    capability: str
    kind: str  # MFT, INV, DIR or OOS
    intent: str


@dataclass(frozen=True)
class Case:
    test: Test
    texts: tuple[str, ...]  # MFT, OOS: (text,); INV: (original, perturbed); DIR: (base, changed)
    label: str | None = None  # MFT: expected; DIR: watched
    forbidden: str | None = None  # MFT with expect_not
    direction: str | None = None  # DIR: up or down
    tolerance: float = 0.0


@dataclass
class Suite:
    tests: list[Test] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)


class _Lines(list):
    """A YAML sequence that remembers each item's line."""

    lines: list[int]


class _Loader(yaml.SafeLoader):
    """Mappings get their line as "__line__", sequences their items' lines."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> _Lines:
    items = _Lines(loader.construct_sequence(node, deep=True))
    items.lines = [item.start_mark.line + 1 for item in node.value]
    return items


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def _read(path: Path):
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as error:
        raise PipelineError(f"{path}: cannot read it ({error.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}{where}: not valid YAML ({first_line(error)})") from None


def placeholders(template: str) -> list[str]:
    """The {keys} of a template, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def load_suite(folder: Path, labels: list[str], texts: list[str], invariance_texts: int,
               seed: int) -> Suite:
    """The suite in `folder` (tests.yaml, lexicons.yaml) for a model with `labels`, expanded;
    `texts`: the pool the invariance tests sample `invariance_texts` originals from."""
    lexicon_file, tests_file = folder / "lexicons.yaml", folder / "tests.yaml"
    lexicons = _read(lexicon_file)
    if not isinstance(lexicons, dict):
        raise PipelineError(f"{lexicon_file}:1: not a mapping of word lists")
    for label in labels:
        if label not in lexicons:
            raise PipelineError(f"{lexicon_file}:{lexicons['__line__']}: no word list for the "
                                f"model's label {label!r}")
    entries = _read(tests_file)
    if not isinstance(entries, list):
        raise PipelineError(f"{tests_file}:1: not a list of tests")
    rng = random.Random(seed)
    originals = rng.sample(texts, min(invariance_texts, len(texts)))
    suite, names = Suite(), set()
    for entry, line in zip(entries, entries.lines):
        where = f"{tests_file}:{line}"
        if not isinstance(entry, dict):
            raise PipelineError(f"{where}: a test must be a mapping")
        kind = entry.get("type")
        if kind not in TYPES:
            raise PipelineError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
        for key in ["name", "capability", "intent", *FIELDS[kind]]:
            if key not in entry:
                raise PipelineError(f"{where}: test {entry.get('name', '?')!r} has no {key}")
        if entry["name"] in names:
            raise PipelineError(f"{where}: a second test named {entry['name']!r}")
        names.add(entry["name"])
        test = Test(entry["name"], entry["capability"], kind, entry["intent"])
        suite.tests.append(test)
        suite.cases += _expand(test, entry, where, tests_file, lexicons, labels, originals,
                               random.Random(f"{seed}-{test.name}"))
    return suite


def _expand(test: Test, entry: dict, where: str, tests_file: Path, lexicons: dict,
            labels: list[str], originals: list[str], rng: random.Random) -> list[Case]:
    for key in ("expect", "expect_not"):
        if key in entry and entry[key] not in labels:
            raise PipelineError(f"{where}: {key} {entry[key]!r} is not a label of the model "
                                f"({', '.join(labels)})")
    each_label = bool(entry.get("for_each_label"))
    if test.kind == "MFT" and not each_label and not ("expect" in entry or "expect_not" in entry):
        raise PipelineError(f"{where}: an MFT needs expect, expect_not or for_each_label")
    if test.kind == "INV":
        name = entry["perturbation"]
        if name not in PERTURBATIONS:
            raise PipelineError(f"{where}: perturbation {name!r} is not one of "
                                f"{', '.join(PERTURBATIONS)}")
        for key in NEEDS.get(name, []):
            if key not in lexicons:
                raise PipelineError(f"{where}: perturbation {name!r} needs lexicons.yaml's "
                                    f"{key!r}")
        return [Case(test, (text, changed)) for text in originals
                if (changed := PERTURBATIONS[name](text, rng, lexicons)) not in (None, text)]
    if test.kind == "DIR" and entry["direction"] not in ("up", "down"):
        raise PipelineError(f"{where}: direction {entry['direction']!r} is not up or down")
    rows = entry["pairs"] if test.kind == "DIR" else entry["templates"]
    if not isinstance(rows, list) or not rows:
        raise PipelineError(f"{where}: {'pairs' if test.kind == 'DIR' else 'templates'} "
                            "must be a non-empty list")
    cases = []
    for row, row_line in zip(rows, rows.lines):
        templates = list(row) if test.kind == "DIR" else [row]
        if test.kind == "DIR" and len(templates) != 2:
            raise PipelineError(f"{tests_file}:{row_line}: a pair is [base, changed]")
        for template in templates:
            if not isinstance(template, str):
                raise PipelineError(f"{tests_file}:{row_line}: a template must be text")
            try:
                keys = placeholders(template)
            except ValueError as error:
                raise PipelineError(f"{tests_file}:{row_line}: bad template {template!r} "
                                    f"({error})") from None
            for key in keys:
                if key == "word" and not each_label:
                    raise PipelineError(f"{tests_file}:{row_line}: {{word}} needs "
                                        "for_each_label: true")
                if key != "word" and not isinstance(lexicons.get(key), list):
                    raise PipelineError(f"{tests_file}:{row_line}: template {template!r}: no "
                                        f"word list {key!r} in lexicons.yaml")
        for label in labels if each_label else [entry.get("expect")]:
            words = {**lexicons, "word": lexicons.get(label, [])}
            keys = list(dict.fromkeys(key for template in templates
                                      for key in placeholders(template)))
            for values in itertools.product(*(words[key] for key in keys)):
                filled = tuple(template.format(**dict(zip(keys, values)))
                               for template in templates)
                if test.kind == "DIR":
                    cases.append(Case(test, filled, label=label, direction=entry["direction"],
                                      tolerance=float(entry.get("tolerance", 0.0))))
                elif test.kind == "MFT":
                    cases.append(Case(test, filled, label=label if each_label
                                      else entry.get("expect"),
                                      forbidden=entry.get("expect_not")))
                else:
                    cases.append(Case(test, filled))
    return cases

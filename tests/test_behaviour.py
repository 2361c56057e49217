"""The behaviour suite's mechanics (emotion.behaviour) on the tiny model: expansion, each
verdict recomputed independently from the raw graph, one-line errors naming file and line;
and the stage in the tiny pipeline (DVC reruns it when a suite file changes, and only then)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import HARD_TEXTS, LABELS, ROOT, raw_logits, softmax

SUITE = ROOT / "behaviour"
POOL = [text for text in HARD_TEXTS if text.strip()] * 3


def tiny_suite(folder: Path, tests: str, lexicons: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tests.yaml").write_text(tests)
    (folder / "lexicons.yaml").write_text(lexicons or (SUITE / "lexicons.yaml").read_text())
    return folder


def test_the_repo_suite_expands_deterministically_to_over_a_thousand_cases():
    from emotion.behaviour.suite import load_suite

    texts = [f"i feel something about day {n} and i am not sure" for n in range(400)]
    first, again = (load_suite(SUITE, LABELS, texts, 150, seed=7) for _ in range(2))
    other = load_suite(SUITE, LABELS, texts, 150, seed=8)
    assert len(first.cases) >= 1000
    assert [case.texts for case in first.cases] == [case.texts for case in again.cases]
    assert [case.texts for case in first.cases] != [case.texts for case in other.cases]
    kinds = {case.test.kind for case in first.cases}
    assert kinds == {"MFT", "INV", "DIR", "OOS"}
    # Every MFT of simple_emotion expects the label whose word it holds.
    lexicons = __import__("yaml").safe_load((SUITE / "lexicons.yaml").read_text())
    for case in first.cases:
        if case.test.name == "simple_emotion":
            assert case.texts[0].split()[-1] in lexicons[case.label] or any(
                word in case.texts[0].split() for word in lexicons[case.label])
        if case.test.kind == "INV":
            assert case.texts[0] in texts and case.texts[1] != case.texts[0]


def reference_verdict(case, probabilities: dict[str, np.ndarray]) -> bool | None:
    """The verdict rules written again from the suite's header, apart from the library's."""
    p = [probabilities[text] for text in case.texts]
    if case.test.kind == "MFT":
        top = LABELS[int(np.argmax(p[0]))]
        return top == case.forbidden if case.forbidden else top != case.label
    if case.test.kind == "INV":
        return LABELS[int(np.argmax(p[0]))] != LABELS[int(np.argmax(p[1]))]
    if case.test.kind == "DIR":
        i = LABELS.index(case.label)
        change = p[1][i] - p[0][i]
        return change < -case.tolerance if case.direction == "up" else change > case.tolerance
    return None


def test_failure_rates_match_an_independent_count_from_the_raw_graph(runtime_folders):
    """The stage's figures for the tiny model, recomputed from plain onnxruntime's logits of
    the float32 graph: every test's cases and failures, and the out-of-scope shares."""
    from tokenizers import Tokenizer

    from emotion.behaviour.suite import load_suite
    from emotion.behaviour.verdict import scores_of, summarize
    from emotion.predict import TextClassifier

    folder = runtime_folders["onnx"]
    suite = load_suite(SUITE, LABELS, POOL, 20, seed=7)
    classifier = TextClassifier(folder, runtime="onnxruntime-float32")
    scores = scores_of(suite, lambda texts: classifier.predict(texts).probabilities)
    figures = summarize(suite, scores, LABELS, [0.18, 0.5])
    texts = list(dict.fromkeys(text for case in suite.cases for text in case.texts))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(32)
    ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    raw = dict(zip(texts, softmax(raw_logits(folder / "model.onnx", ids))))
    for test in suite.tests:
        cases = [case for case in suite.cases if case.test is test]
        got = figures["tests"][test.name]
        assert got["cases"] == len(cases) > 0, test.name
        if test.kind == "OOS":
            continue
        failures = sum(reference_verdict(case, raw) for case in cases)
        assert got["failures"] == failures, test.name
        assert got["failure_rate"] == round(failures / len(cases), 4)
    assert sum(figures["tests"][t.name]["failures"] for t in suite.tests if t.kind != "OOS") > 0
    oos = [case for case in suite.cases if case.test.kind == "OOS"]
    for threshold in (0.18, 0.5):
        share = np.mean([raw[case.texts[0]].max() >= threshold for case in oos])
        assert figures["out_of_scope"]["labelled_at"][str(threshold)] == round(share, 4)


@pytest.mark.parametrize(("tests", "lexicons", "named"), [
    ("- name: a\n  capability: c\n  type: MFT\n  intent: i\n  expect: happiness\n"
     "  templates: ['i feel {joy}']\n", None, "tests.yaml:1: expect 'happiness' is not a label"),
    ("- name: a\n  capability: c\n  type: MFT\n  intent: i\n  expect: joy\n  templates:\n"
     "    - 'i feel {joy}'\n    - 'i feel {colour}'\n", None,
     "tests.yaml:8: template 'i feel {colour}': no word list 'colour' in lexicons.yaml"),
    ("- name: a\n  capability: c\n  type: MFT\n  intent: i\n  expect: joy\n  templates:\n"
     "    - 'i feel {joy'\n", None, "tests.yaml:7: bad template 'i feel {joy'"),
    ("- name: a\n  capability: c\n  type: DIR\n  intent: i\n  direction: sideways\n"
     "  pairs: [['a {joy}', 'b {joy}']]\n", None, "tests.yaml:1: direction 'sideways'"),
    ("- name: a\n  capability: c\n  type: INV\n  intent: i\n  perturbation: shout\n", None,
     "tests.yaml:1: perturbation 'shout' is not one of"),
    ("- name: a\n  capability: c\n  type: XYZ\n  intent: i\n", None,
     "tests.yaml:1: type 'XYZ' is not one of"),
    ("- name: a\n  type: MFT\n  intent: i\n", None, "tests.yaml:1: test 'a' has no capability"),
    ("- name: a\n  capability: c\n  type: MFT\n  intent: i\n  expect: joy\n  templates: [\n",
     None, "tests.yaml:7: not valid YAML"),
    ("[]\n", "joy: [happy]\nsadness: [sad]\n", "lexicons.yaml:1: no word list for the model's "
     "label 'love'"),
])
def test_a_bad_suite_file_is_one_line_naming_file_and_line(tmp_path, tests, lexicons, named):
    from emotion.behaviour.suite import load_suite
    from emotion.errors import PipelineError

    folder = tiny_suite(tmp_path / "behaviour", tests, lexicons)
    with pytest.raises(PipelineError) as error:
        load_suite(folder, LABELS, POOL, 5, seed=1)
    message = str(error.value)
    assert "\n" not in message and named in message, message


def test_the_stage_writes_its_metrics_plots_and_cards_and_reruns_only_for_its_inputs(dvc_repo):
    """In the tiny pipeline: metrics/behaviour.json (declared as metrics, shown by `dvc
    metrics show`), plots/behaviour/, and both published model cards' Behaviour section
    written from them; a changed suite file makes behaviour alone stale, and reruns it and
    then publish (its results change the cards), nothing upstream; put back, nothing is
    stale."""
    from conftest import dvc, ran, stale

    root, _ = dvc_repo
    metrics = json.loads((root / "metrics/behaviour.json").read_text())
    assert metrics["cases"] >= 1000
    assert set(metrics["capabilities"]) == {"vocabulary", "negation", "intensity",
                                            "robustness"}
    assert set(metrics["mft_labels"]) == set(LABELS)
    assert metrics["int8_vs_float32"]["texts"] > 0
    rates = (root / "plots/behaviour/failure_rates.csv").read_text().splitlines()
    assert rates[0] == "test,capability,failure_rate" and len(rates) == 1 + sum(
        test["type"] != "OOS" for test in metrics["tests"].values())
    assert "metrics/behaviour.json" in dvc(root, "metrics", "show", "--json")
    vocabulary = metrics["capabilities"]["vocabulary"]
    failing = (root / "plots/behaviour/failures.csv").read_text().splitlines()[1].split(",")
    for card in ("models/emotion/README.md", "models/onnx/README.md"):
        text = (root / card).read_text()
        assert text.count("## Behaviour") == 1, card
        assert f"vocabulary {vocabulary['failure_rate']:.1%} of {vocabulary['cases']:,}" in text
        assert f"{metrics['cases']:,} cases" in text and f"| {failing[0]} | " in text
    for build, published in (("models/build/emotion", "models/emotion"),
                             ("models/build/onnx", "models/onnx")):
        files = sorted(path.name for path in (root / build).iterdir())
        assert files == sorted(path.name for path in (root / published).iterdir())
        for name in files:  # the same files, but for the card's added section
            if name != "README.md":
                assert (root / build / name).read_bytes() == (root / published / name
                                                              ).read_bytes()
    tests_file = root / "behaviour/tests.yaml"
    original = tests_file.read_text()
    try:
        tests_file.write_text(original.replace('"i feel {word}"\n', '"i really feel {word}"\n',
                                               1))
        assert stale(root) == {"behaviour"}
        assert ran(dvc(root, "repro")) in (["behaviour"], ["behaviour", "publish"])
    finally:
        tests_file.write_text(original)
        shutil.rmtree(root / ".dvc/tmp/behaviour", ignore_errors=True)
        dvc(root, "repro")
    assert stale(root) == set()

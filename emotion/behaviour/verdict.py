"""Each case's verdict from the model's probabilities, and the figures of metrics/behaviour.json:
per test (cases, failures, failure rate), per capability, per label for the MFTs, the share
of out-of-scope statements labelled at each threshold, and where two runtimes' verdicts
differ."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from emotion.behaviour.suite import Case, Suite


def scores_of(suite: Suite, predict: Callable[[list[str]], np.ndarray]) -> dict[str, np.ndarray]:
    """Every text of the suite's cases and its probabilities (one call of predict)."""
    texts = list(dict.fromkeys(text for case in suite.cases for text in case.texts))
    return dict(zip(texts, predict(texts)))


def failed(case: Case, scores: dict[str, np.ndarray], labels: Sequence[str]) -> bool | None:
    """Whether the case fails (None: an out-of-scope case, which has no verdict)."""
    first = scores[case.texts[0]]
    if case.test.kind == "MFT":
        top = labels[int(first.argmax())]
        return (case.label is not None and top != case.label) or top == case.forbidden
    if case.test.kind == "INV":
        return int(first.argmax()) != int(scores[case.texts[1]].argmax())
    if case.test.kind == "DIR":
        index = labels.index(case.label)
        moved = float(scores[case.texts[1]][index] - first[index])
        return moved > case.tolerance if case.direction == "down" else moved < -case.tolerance
    return None


def _rate(verdicts: list[bool]) -> dict:
    failures = sum(verdicts)
    return {"cases": len(verdicts), "failures": failures,
            "failure_rate": round(failures / len(verdicts), 4) if verdicts else 0.0}


def summarize(suite: Suite, scores: dict[str, np.ndarray], labels: Sequence[str],
              thresholds: Sequence[float]) -> dict:
    """metrics/behaviour.json's figures (all but the runtime comparison)."""
    verdicts = [failed(case, scores, labels) for case in suite.cases]
    by_test: dict[str, list[bool]] = {test.name: [] for test in suite.tests}
    by_capability: dict[str, list[bool]] = {}
    by_label: dict[str, list[bool]] = {label: [] for label in labels}
    confident = {threshold: [] for threshold in thresholds}
    for case, verdict in zip(suite.cases, verdicts):
        if verdict is None:
            top = float(scores[case.texts[0]].max())
            for threshold in thresholds:
                confident[threshold].append(top >= threshold)
            continue
        by_test[case.test.name].append(verdict)
        by_capability.setdefault(case.test.capability, []).append(verdict)
        if case.test.kind == "MFT":
            by_label[case.label or case.forbidden].append(verdict)
    out_of_scope = [case for case, verdict in zip(suite.cases, verdicts) if verdict is None]
    return {
        "cases": len(suite.cases),
        "tests": {test.name: {"capability": test.capability, "type": test.kind,
                              **(_rate(by_test[test.name]) if test.kind != "OOS"
                                 else {"cases": sum(case.test is test
                                                    for case in out_of_scope)})}
                  for test in suite.tests},
        "capabilities": {name: _rate(values) for name, values in by_capability.items()},
        "mft_labels": {label: _rate(values) for label, values in by_label.items() if values},
        "out_of_scope": {"cases": len(out_of_scope), "labelled_at": {
            str(threshold): round(float(np.mean(values)), 4) if values else 0.0
            for threshold, values in confident.items()}},
    }


def failing_examples(suite: Suite, scores: dict[str, np.ndarray], labels: Sequence[str],
                     per_test: int) -> list[dict]:
    """Up to per_test failing cases of each test, in suite order: the texts, what was
    expected and what the model gave."""
    rows, shown = [], {}
    for case in suite.cases:
        if not failed(case, scores, labels) or shown.get(case.test.name, 0) >= per_test:
            continue
        shown[case.test.name] = shown.get(case.test.name, 0) + 1
        first = scores[case.texts[0]]
        got = f"{labels[int(first.argmax())]} {first.max():.2f}"
        if case.test.kind == "MFT":
            expected = case.label or f"not {case.forbidden}"
        elif case.test.kind == "INV":
            second = scores[case.texts[1]]
            expected, got = "the same label", f"{got} -> {labels[int(second.argmax())]} " \
                                               f"{second.max():.2f}"
        else:
            index = labels.index(case.label)
            expected = f"{case.label} {case.direction}"
            got = (f"{case.label} {first[index]:.2f} -> "
                   f"{scores[case.texts[1]][index]:.2f}")
        rows.append({"test": case.test.name, "capability": case.test.capability,
                     "text": " => ".join(case.texts), "expected": expected, "got": got})
    return rows


def verdict_differences(suite: Suite, ours: dict[str, np.ndarray],
                        theirs: dict[str, np.ndarray], labels: Sequence[str]) -> dict:
    """Where two runtimes (e.g. int8 and float32) differ on the suite: texts whose label
    differs, and per test the cases whose verdict differs."""
    texts = list(ours)
    differ = {test.name: 0 for test in suite.tests if test.kind != "OOS"}
    for case in suite.cases:
        if case.test.kind != "OOS" and failed(case, ours, labels) != failed(case, theirs,
                                                                           labels):
            differ[case.test.name] += 1
    return {"texts": len(texts),
            "label_differences": sum(int(ours[text].argmax()) != int(theirs[text].argmax())
                                     for text in texts),
            "verdict_differences": differ}

"""The README paragraphs that quote metrics/*.json, generated from them.

    python -m tools.metrics_docs           # rewrite them in README.md
    python -m tools.metrics_docs --check   # exit 1, naming them, if README.md differs

Each paragraph sits between `<!-- metrics:NAME -->` and `<!-- /metrics:NAME -->` in
README.md; everything else is left as it is. The suite runs --check on the committed README
and metrics, so a rerun that changes a metric fails until the text follows.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from emotion.errors import PipelineError, exit_on_error
from emotion.files import atomic_output, read_json

README = Path("README.md")
METRICS = Path("metrics")
# The reference notebook's test figures (BERT-base, 8 epochs, lr 1e-5).
REFERENCE = {"accuracy": 0.9220, "loss": 0.2231}


def read_metrics(folder: Path) -> dict[str, dict]:
    """metrics/<name>.json by name; a missing or damaged file is a PipelineError naming it."""
    return {name: read_json(folder / f"{name}.json", "run dvc repro first")
            for name in ("train", "evaluate", "export", "onnx", "behaviour")}


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def results(m: dict[str, dict]) -> str:
    """What the default run measured, of the TensorFlow model and of what runs by default."""
    test, raw = m["evaluate"]["test"], m["evaluate"]["uncalibrated"]["test"]
    temperature = m["evaluate"]["calibration"]["temperature"]
    kept = m["evaluate"]["min_prob"]["test"].get("0.9")
    tests = m["export"]["prediction_parity"]["texts"]  # the test split's size
    standard_error = (test["accuracy"] * (1 - test["accuracy"]) / tests) ** 0.5
    default = (m["onnx"]["preferred"] or [m["onnx"]["default"]])[0]
    runtime = m["onnx"][default]
    runtime_kept = runtime["min_prob"]["test"].get("0.9")
    text = (
        f"Default run (the reference recipe: a Dense softmax layer on the `[CLS]` output, Adam "
        f"lr 1e-5, {m['train']['epochs']} epochs, seed 42; the best epoch, "
        f"{m['train']['best_epoch']}, chosen on validation loss), on the test split: accuracy "
        f"**{test['accuracy']:.4f}**, loss **{test['loss']:.4f}**, macro-F1 "
        f"{test['macro_f1']:.3f} (`metrics/evaluate.json`, the TensorFlow model of "
        f"`models/emotion`). The reference notebook (BERT-base) reached "
        f"{REFERENCE['accuracy']:.4f} / {REFERENCE['loss']:.4f}; one test standard error of "
        f"accuracy is {100 * standard_error:.1f} points. **Calibrated**: a temperature of "
        f"{temperature:.3f} fitted on validation brings the test loss from {raw['loss']:.4f} "
        f"to {test['loss']:.4f} and the expected calibration error from {raw['ece']:.4f} to "
        f"{test['ece']:.4f}, labels unchanged")
    if kept and "accuracy" in kept:
        text += (f"; keeping only labels with probability ≥ 0.9 (`--min-prob 0.9`) labels "
                 f"{percent(kept['coverage'])} of the test texts at "
                 f"{percent(kept['accuracy'])} accuracy")
    text += (
        f".\n\nWhat `emotion-predict` runs by default"
        f"{' where it can' if m['onnx']['preferred'] else ''}, **{default}** "
        f"(`metrics/onnx.json`): test accuracy {runtime['test']['accuracy']:.4f}, loss "
        f"{runtime['test']['loss']:.4f}, ECE {runtime['test']['ece']:.4f}")
    if runtime_kept and "accuracy" in runtime_kept:
        text += (f", `--min-prob 0.9` {percent(runtime_kept['coverage'])} of the texts at "
                 f"{percent(runtime_kept['accuracy'])} accuracy")
    return text + "."


def onnx(m: dict[str, dict]) -> str:
    """What each runtime of the runtime folder costs against the TensorFlow model."""
    metrics = m["onnx"]
    float32, int8 = metrics["onnxruntime-float32"], metrics["onnxruntime-int8"]
    bf16 = metrics["openvino-bf16"]
    default, preferred = metrics["default"], metrics["preferred"]
    texts = metrics["token_parity"]["texts"]
    tests = m["export"]["prediction_parity"]["texts"]  # the test split's size
    drop = float32["validation"]["accuracy"] - int8["validation"]["accuracy"]
    measured = [figures for figures in (float32, int8, bf16) if "test" in figures]
    batch_moves = [figures["batch_independence"]["test"]["max_probability_difference"]
                   for figures in (float32, int8)]
    text = (
        f"**Which runtime, and what it costs** (`metrics/onnx.json`, measured by the `onnx` "
        f"stage on every run against the TF model, on {metrics['cpu']}): the float32 graph's "
        f"test labels differ from TF's on {float32['test']['label_mismatches']} of {tests:,} "
        f"texts (largest probability difference "
        f"{float32['test']['max_probability_difference']:.1e}), its tokenizer's ids on "
        f"{metrics['token_parity']['mismatches']} of {texts:,}. The int8 graph "
        f"({int8['size_mb']:.0f} MB instead of {float32['size_mb']:.0f}; 8-bit weights, a "
        f"scale per block of {metrics['int8_block_size']}; "
        f"{int8['vs_float32']['validation']['label_mismatches']} validation labels differ "
        f"from float32's) {'loses' if drop > 0 else 'gains'} {100 * abs(drop):.2f} points of "
        f"validation accuracy against float32 ({int8['validation']['accuracy']:.4f} vs "
        f"{float32['validation']['accuracy']:.4f}), so ONNX Runtime's default is "
        f"**{default}**. On test, int8 vs float32: accuracy {int8['test']['accuracy']:.4f} vs "
        f"{float32['test']['accuracy']:.4f}, calibrated loss {int8['test']['loss']:.4f} vs "
        f"{float32['test']['loss']:.4f}, ECE {int8['test']['ece']:.4f} vs "
        f"{float32['test']['ece']:.4f}. Both ONNX Runtime graphs run fused kernels "
        f"({float32['operators']['Attention']} Attention, "
        f"{float32['operators']['SkipLayerNormalization']} SkipLayerNormalization); a test "
        f"text's probabilities alone and in a batch differ by at most "
        f"{f'{max(batch_moves):.1g}' if max(batch_moves) else '0 (bit-equal)'}.")
    if "test" in bf16:
        moved = bf16["batch_independence"]["test"]
        text += (
            f" **OpenVINO in bfloat16** (the `openvino` extra, CPUs with AVX512_BF16 or AMX): "
            f"test accuracy {bf16['test']['accuracy']:.4f}, probabilities within "
            f"{bf16['vs_float32']['test']['max_probability_difference']:.2f} of float32's "
            f"(int8: {int8['vs_float32']['test']['max_probability_difference']:.2f}), alone vs."
            f" batched within {moved['max_probability_difference']:.1g} "
            f"({moved['label_mismatches']} labels moved); the rule: "
            f"{metrics['rule']['openvino-bf16']}, so "
            + (f"**{preferred[0]}** runs where it can." if preferred
               else f"{default} runs everywhere."))
    else:
        text += f" OpenVINO bfloat16 was not measured: {bf16['why']}."
    return text + (f" `--runtime` picks another; `models/onnx/README.md` has each of the "
                   f"{len(measured)} measured runtimes' `--min-prob` figures.")


def export(m: dict[str, dict]) -> str:
    """The SavedModel's parity with the Python path."""
    tokens, predictions = m["export"]["token_parity"], m["export"]["prediction_parity"]
    return (
        f"Its parity with the Python path is checked on every run (`metrics/export.json`): "
        f"{tokens['mismatches']} token-id mismatches on all {tokens['texts']:,} texts, "
        f"{predictions['label_mismatches']} label mismatches on the test split, largest "
        f"probability difference {predictions['max_probability_difference']:.1e} (goal: 1e-5).")


def behaviour(m: dict[str, dict]) -> str:
    """The behaviour stage's headline figures: failure rate per capability, the worst tests,
    the out-of-scope share, int8 against float32."""
    metrics = m["behaviour"]
    tests = {name: test for name, test in metrics["tests"].items() if test["type"] != "OOS"}
    worst = sorted(tests, key=lambda name: -tests[name]["failure_rate"])[:3]
    confident = metrics["out_of_scope"]["labelled_at"]
    differences = metrics["int8_vs_float32"]
    top = max(confident, key=float)  # the highest --min-prob threshold
    return (
        f"**Behaviour** (`metrics/behaviour.json`, the `behaviour` stage: {metrics['cases']:,} "
        f"CheckList cases from `behaviour/*.yaml` on {metrics['runtime']}): failure rate "
        + ", ".join(f"{name} {percent(figures['failure_rate'])}"
                    for name, figures in metrics["capabilities"].items())
        + "; the worst tests " + ", ".join(
            f"{name} {percent(tests[name]['failure_rate'])}" for name in worst)
        + f". Statements with no emotion get a label at probability ≥ {top} "
        f"{percent(confident[top])} of the time. int8 and float32 label "
        f"{differences['label_differences']} of its {differences['texts']:,} texts "
        f"differently.")


BLOCKS: dict[str, Callable[[dict[str, dict]], str]] = {
    "results": results, "behaviour": behaviour, "onnx": onnx, "export": export}


def block_pattern(name: str) -> re.Pattern:
    """A block of README.md between its markers: groups 1 and 3 the markers, 2 the text."""
    return re.compile(rf"(<!-- metrics:{name} -->\n)(.*?)(\n<!-- /metrics:{name} -->)", re.S)


def render(readme: str, metrics: dict[str, dict]) -> str:
    """readme with every block generated anew."""
    for name, block in BLOCKS.items():
        pattern = block_pattern(name)
        if not pattern.search(readme):
            raise PipelineError(f"{README}: no <!-- metrics:{name} --> ... "
                                f"<!-- /metrics:{name} --> block")
        try:
            text = wrap(block(metrics))
        except KeyError as error:
            raise PipelineError(f"metrics/*.json: no {error} for the {name} paragraph (run "
                                "dvc repro first)") from None
        readme = pattern.sub(lambda match, t=text: match[1] + t + match[3], readme)
    return readme


def wrap(text: str, width: int = 95) -> str:
    """Paragraphs wrapped at `width` characters (words and hyphenated names never split)."""
    return "\n\n".join(textwrap.fill(paragraph, width, break_long_words=False,
                                       break_on_hyphens=False)
                         for paragraph in text.split("\n\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming the blocks that differ")
    args = parser.parse_args()
    readme = README.read_text(encoding="utf8")
    generated = render(readme, read_metrics(METRICS))
    if args.check:
        stale = [name for name in BLOCKS
                 if block_text(readme, name) != block_text(generated, name)]
        if stale:
            raise PipelineError(f"{README}: the metrics paragraphs {', '.join(stale)} differ "
                                "from metrics/*.json: run python -m tools.metrics_docs")
        print(f"{README}: the metrics paragraphs match metrics/*.json")
        return
    if generated != readme:
        with atomic_output(README) as out:
            out.write_text(generated, encoding="utf8")
    print(f"{README}: {len(BLOCKS)} metrics paragraphs written")


def block_text(readme: str, name: str) -> str:
    match = block_pattern(name).search(readme)
    return match[2] if match else ""


if __name__ == "__main__":
    exit_on_error(main)

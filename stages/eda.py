"""Stage eda: label distribution, text lengths and class imbalance per split.

Writes plots/eda/:
- labels_<split>.csv: label, count, proportion (DVC bar plots)
- token_lengths.csv: length histogram in tokens per split (a DVC line plot)
- summary.json: rows, imbalance ratio, length statistics per split
- label_frequency.png, label_proportion.png, text_lengths.png: the pictures
"""

from emotion.process import start_stage

if __name__ == "__main__":  # before anything imports datasets
    start_stage()

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from emotion.data import encode, label_names, load_tokenizer, read_split  # noqa: E402
from emotion.errors import exit_on_error  # noqa: E402
from emotion.files import atomic_output, save_figure  # noqa: E402
from emotion.params import load_params, model_source, positive  # noqa: E402
from emotion.paths import EDA_DIR, RAW_DIR, SPLITS  # noqa: E402


def length_histogram(lengths: dict[str, np.ndarray], bin_width: int) -> pd.DataFrame:
    """Counts per length bin (bin start as the index), one column per split."""
    top = max(int(values.max()) for values in lengths.values()) + bin_width
    edges = np.arange(0, top + 1, bin_width)
    table = {split: np.histogram(values, bins=edges)[0] for split, values in lengths.items()}
    return pd.DataFrame(table, index=pd.Index(edges[:-1], name="length"))


def main() -> None:
    bin_width = positive(load_params("eda"), "eda", "length_bin_width", int)
    tokenizer = load_tokenizer(*model_source())
    splits = {split: read_split(RAW_DIR, split) for split in SPLITS}
    names = label_names(splits["train"])

    rows, words, tokens, summary = [], {}, {}, {}
    for split, data in splits.items():
        texts = list(data["text"])
        counts = np.bincount(list(data["label"]), minlength=len(names))
        for name, count in zip(names, counts):
            rows.append({"split": split, "label": name, "count": int(count),
                         "proportion": round(count / counts.sum(), 6)})
        words[split] = np.array([len(text.split()) for text in texts])
        tokens[split] = np.array([len(ids) for ids in encode(tokenizer, texts, None)])
        summary[split] = {
            "rows": int(counts.sum()),
            "majority_label": names[int(counts.argmax())],
            "minority_label": names[int(counts.argmin())],
            "imbalance_ratio": round(counts.max() / max(counts.min(), 1), 3),
            "words": {"mean": round(float(words[split].mean()), 2),
                      "p95": float(np.percentile(words[split], 95)),
                      "max": int(words[split].max())},
            "tokens": {"mean": round(float(tokens[split].mean()), 2),
                       "p95": float(np.percentile(tokens[split], 95)),
                       "max": int(tokens[split].max()),
                       "over_64": int((tokens[split] > 64).sum())},
        }
    labels = pd.DataFrame(rows)

    with atomic_output(EDA_DIR) as out:
        out.mkdir()
        for split in SPLITS:
            labels[labels["split"] == split].drop(columns="split").to_csv(
                out / f"labels_{split}.csv", index=False)
        length_histogram(tokens, bin_width).to_csv(out / "token_lengths.csv")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        for column, title in (("count", "frequency"), ("proportion", "proportion")):
            table = labels.pivot(index="label", columns="split", values=column)
            ax = table.loc[names, list(SPLITS)].plot.bar(figsize=(8, 4.5), rot=0)
            ax.set(title=f"Label {title} per split", xlabel="", ylabel=title)
            save_figure(ax.figure, out / f"label_{title}.png")
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, unit, lengths in ((axes[0], "words", words), (axes[1], "tokens", tokens)):
            histogram = length_histogram(lengths, bin_width)
            (histogram / histogram.sum()).plot(ax=ax, drawstyle="steps-post")
            ax.set(title=f"Text length in {unit}", xlabel=unit, ylabel="share of texts")
        save_figure(figure, out / "text_lengths.png")
    for split, facts in summary.items():
        print(f"{split}: {facts['rows']} rows, imbalance {facts['imbalance_ratio']}, "
              f"mean {facts['tokens']['mean']} tokens")


if __name__ == "__main__":
    exit_on_error(main)

"""The run's history: one row per epoch (state.json, dvclive/, history.csv,
metrics/train.json), the line each epoch prints, and the summary metrics/train.json holds."""

from __future__ import annotations

import numpy as np


def epoch_record(epoch: int, result: dict, val_loss: float, val_accuracy: float,
                 learning_rate: float) -> dict:
    """An epoch's row of the history; result: emotion.training.step.train_epoch's;
    learning_rate: the rate the epoch ended with."""
    return {
        "epoch": epoch,
        "loss": result["loss"],
        "accuracy": result["accuracy"],
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "learning_rate": learning_rate,
        "train_seconds": round(result["seconds"], 1),
        "examples_per_second": round(result["examples"] / result["seconds"], 2),
        "mean_padded_length": round(result["tokens"] / result["examples"], 2),
    }


def epoch_line(label: str, row: dict) -> str:
    """What the stage prints when an epoch ends."""
    return f"{label}: " + ", ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in row.items() if key != "epoch")


def train_summary(history: list[dict], best: dict, settings: dict, replicas: int) -> dict:
    """metrics/train.json: the kept (best) epoch's figures, how it was chosen, and the run's
    precision, distribution and speed."""
    distribution = settings["distribution"]
    return {
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "selected_by": "lowest validation loss",
        "validation": {"loss": round(best["val_loss"], 6),
                       "accuracy": round(best["val_accuracy"], 6)},
        "train": {"loss": round(best["loss"], 6), "accuracy": round(best["accuracy"], 6)},
        "precision": settings["precision"],
        **({} if distribution == "none" else {
            "distribution": distribution, "replicas": replicas}),
        **({"xla": True} if settings["xla"] else {}),
        "train_minutes": round(sum(row["train_seconds"] for row in history) / 60, 1),
        "examples_per_second": round(
            float(np.mean([row["examples_per_second"] for row in history])), 1),
    }

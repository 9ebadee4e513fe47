"""The report's figures, from a split's predictions (``Predictions``) and a run's files:
the confusion matrix, per-class scores, an image grid of errors, training curves, the
reliability diagram before and after temperature scaling (``TemperatureScaled``), the
accuracy under corruptions. Each ``*_figure`` gives PNG bytes; each ``*_plot``, where
there is one, the matplotlib Figure (the notebook shows it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..calibration import BINS, expected_calibration_error, probabilities, reliability
from ..config import LEAKY
from ..data import CLASSES
from ..figures import plt, png

SHORT = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Boot")  # fits under a thumbnail


@dataclass
class Predictions:
    """Class probabilities for one split, with what is needed to show the images."""
    labels: np.ndarray   # (N,) true classes
    probs: np.ndarray    # (N, 10)
    images: np.ndarray   # (N, 28, 28) uint8
    index: np.ndarray    # (N,) position of each image in its original IDX file

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean())


@dataclass
class TemperatureScaled:
    """Probabilities of one split's images (those of a ``Predictions``) before and after
    dividing their logits by ``temperature``: what the reliability diagram compares."""
    before: np.ndarray   # (N, classes)
    after: np.ndarray    # (N, classes)
    temperature: float   # 1: none fitted (a run finished before temperature scaling)

    @classmethod
    def of(cls, logits: torch.Tensor, head: str, temperature: float) -> TemperatureScaled:
        """From logits (a combination's: ``calibration.log_of`` its probabilities)."""
        return cls(*(probabilities(logits, head, t).numpy() for t in (1.0, temperature)), temperature)


# -- figures ---------------------------------------------------------------------------

def confusion_figure(counts: np.ndarray) -> bytes:
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, axes = plt.subplots(2, 1, figsize=(7, 13))  # stacked: readable on a phone too
    for ax, values, title, fmt in ((axes[0], counts, "counts", "d"),
                                   (axes[1], rows, "share of each true class (rows sum to 1)", ".2f")):
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(CLASSES)):
            for j in range(len(CLASSES)):
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
        ax.set_yticks(range(len(CLASSES)), CLASSES)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"Confusion matrix, {title}")
    fig.tight_layout()
    return png(fig)


def scores_figure(scores: dict) -> bytes:
    return png(scores_plot(scores))


def scores_plot(scores: dict):
    """The per-class precision, recall and F1 bars (a matplotlib Figure)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(CLASSES))
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [scores[c][metric] for c in CLASSES], 0.27, label=metric)
    ax.set_ylim(0.0, 1.0)  # the whole scale: an axis cut near the lowest bar exaggerates gaps
    ax.set_xticks(x, CLASSES, rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(pred: Predictions, positions: np.ndarray, title: str,
               given_name: str = "true") -> bytes:
    """Thumbnails of ``positions``, captioned with the label, the prediction and its probability."""
    labels = pred.labels
    n = max(len(positions), 1)
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.25 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, positions):
        p = pred.predicted[i]
        ax.imshow(pred.images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{given_name}: {SHORT[labels[i]]}\npred: {SHORT[p]} {pred.probs[i, p]:.2f}\n"
                     f"#{pred.index[i]}", fontsize=8)
    if not len(positions):
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return png(fig)


def curves_figure(history: list[dict], swa_start: int | None) -> bytes:
    return png(curves_plot(history, swa_start))


def curves_plot(history: list[dict], swa_start: int | None):
    """Loss, accuracy and LR per epoch (a matplotlib Figure)."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", ms=3,
                label="train (augmented, dropout on)")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", ms=3, label="validation")
        if all(f"test_{key}" in row for row in history):  # eval.select_on test: the curve it selected on
            ax.plot(epochs, [row[f"test_{key}"] for row in history], "o-", ms=3, color="tab:red",
                    label=f"test ({LEAKY})")
        ax.set_ylabel(label)
        ax.legend()
    axes[2].plot(epochs, [row["lr"] for row in history], "o-", ms=3, color="tab:green")
    axes[2].set_ylabel("learning rate at epoch end")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("epoch")
    # Row "epoch" e is measured at the end of epoch e and plotted at x = e. SWA's first
    # snapshot is taken at the end of epoch swa.start_epoch (engine.swa_due), or at the
    # first cycle end from there under cyclic LR: the first row counting a snapshot.
    first = next((row["epoch"] for row in history if row.get("swa_snapshots", 0) > 0), swa_start)
    for ax in axes:
        ax.grid(alpha=0.3)
        if swa_start is not None:
            ax.axvline(first, color="gray", ls="--", lw=1)
    if swa_start is not None:
        axes[0].text(first, axes[0].get_ylim()[1], " SWA starts", va="top", fontsize=8,
                     color="gray")
    axes[0].set_title("Training curves")
    fig.tight_layout()
    return fig


def ece(probs: np.ndarray, labels: np.ndarray) -> float:
    return expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels))


def reliability_figure(labels: np.ndarray, scaled: TemperatureScaled) -> bytes:
    return png(reliability_plot(labels, scaled))


def reliability_plot(labels: np.ndarray, scaled: TemperatureScaled):
    """Reliability diagrams before and after temperature scaling, side by side (a
    matplotlib Figure): per bin of top-label confidence, the share of its images
    classified right against the diagonal (where confidence and accuracy agree), and
    below, how many images each bin holds."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True, height_ratios=(3, 1))
    edges = np.linspace(0, 1, BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1 / BINS
    t = scaled.temperature
    for col, (probs, title) in enumerate(((scaled.before, "as the network gives them"),
                                          (scaled.after, f"temperature-scaled, T = {t:.3f}" if t != 1.0 else
                                           "no temperature fitted (T = 1)"))):
        bins = reliability(probs, labels)
        top, bottom = axes[0, col], axes[1, col]
        filled = bins["count"] > 0
        top.bar(centres[filled], bins["accuracy"][filled], width, color="tab:blue", edgecolor="white",
                label="accuracy of the bin")
        top.plot(centres[filled], bins["confidence"][filled], "o", ms=4, color="tab:red",
                 label="mean confidence of the bin")
        top.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{title}\nECE {ece(probs, labels):.4f}", fontsize=10)
        top.grid(alpha=0.3)
        bottom.bar(centres, bins["count"], width, color="tab:gray", edgecolor="white")
        bottom.set_yscale("symlog", linthresh=1)
        bottom.set_ylabel("images")
        bottom.set_xlabel("confidence (top class's probability)")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Reliability ({BINS} equal-width bins of confidence)")
    fig.tight_layout()
    return fig
def robustness_figure(record: dict) -> bytes:
    """Accuracy under each corruption (rows) at each severity (columns), from the run's
    robustness record, as a heatmap with the clean accuracy and the mCA in its title."""
    names = list(record["accuracy"])
    levels = sorted({int(s) for by_level in record["accuracy"].values() for s in by_level})
    values = np.array([[record["accuracy"][n].get(str(s), np.nan) for s in levels] for n in names]) * 100
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.32 * len(names)))
    ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(len(names)):
        for j in range(len(levels)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(levels)), [f"severity {s}" for s in levels])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    part = "" if record.get("complete") else ", part of the corruptions"
    ax.set_title(f"Accuracy (%) under corruptions: clean {100 * record['clean_acc']:.2f}, "
                 f"mCA {100 * record['mca']:.2f}{part}", fontsize=9)
    fig.tight_layout()
    return png(fig)

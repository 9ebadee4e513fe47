"""Reports: where a model fails, as files a user can open.

``write_report`` turns predictions on one split into a folder: the confusion
matrix (rows = true class, columns = predicted class), per-class precision,
recall and F1 (scikit-learn), the most confident errors as an image grid and
every error as CSV, training curves, the reliability diagram before and after
temperature scaling, and ``report.html`` (self-contained) and ``report.md`` with
the headline numbers (the calibration error among them). It serves runs, ensembles
and audits alike; ``report_run`` feeds it a finished run.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .. import runs
from ..calibration import BINS, expected_calibration_error, probabilities, reliability
from ..config import LEAKY
from ..data import CLASSES, FashionMNIST
from ..figures import plt, png
from ..inference import LoadedModel, load_run
from ..pages import html_page, html_table, md_table
from ..progress import Progress, stage
from ..rundir import REPORT, FinishedRun, Kind, Summary
from ..splits import Split

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


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts; row i, column j = images of true class i predicted as class j."""
    return confusion_matrix(labels, predicted, labels=range(len(CLASSES)))


def class_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class, plus macro and weighted averages."""
    scores = {}
    p, r, f, s = precision_recall_fscore_support(labels, predicted, labels=range(len(CLASSES)),
                                                 zero_division=0)
    for i, name in enumerate(CLASSES):
        scores[name] = {"precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, average=average,
                                                     labels=range(len(CLASSES)), zero_division=0)
        scores[f"{average} avg"] = {"precision": p, "recall": r, "f1": f, "support": len(labels)}
    return scores


def confident_errors(pred: Predictions) -> np.ndarray:
    """Positions of the misclassified images, most confident first."""
    wrong = np.flatnonzero(pred.predicted != pred.labels)
    confidence = pred.probs[wrong, pred.predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")]


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


# -- the report folder -----------------------------------------------------------------

def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def errors_csv(pred: Predictions, positions: np.ndarray, given_name: str = "true") -> str:
    labels = pred.labels
    rows = [["index", given_name, f"{given_name}_name", "predicted", "predicted_name",
             "probability", f"{given_name}_probability"]]
    for i in positions:
        p, t = pred.predicted[i], labels[i]
        rows.append([int(pred.index[i]), int(t), CLASSES[t], int(p), CLASSES[p],
                     f"{pred.probs[i, p]:.4f}", f"{pred.probs[i, t]:.4f}"])
    return _csv(rows)


def write_report(out: Path, pred: Predictions, title: str, headline: dict[str, str],
                 history: list[dict] | None = None, swa_start: int | None = None,
                 n_errors: int = 25, scaled: TemperatureScaled | None = None,
                 robustness: dict | None = None) -> Path:
    """Write the report folder ``out``; returns the path of report.html. ``scaled``: the
    probabilities before and after temperature scaling, for the reliability diagram;
    ``robustness``: the run's record of accuracy under corruptions, drawn where there is one."""
    out = Path(out)
    counts = confusion(pred.labels, pred.predicted)
    scores = class_scores(pred.labels, pred.predicted)
    errors = confident_errors(pred)
    drawings = {
        "confusion.png": ("Confusion matrix", lambda: confusion_figure(counts)),
        "scores.png": ("Per-class precision, recall and F1", lambda: scores_figure(scores)),
        "errors.png": (f"The {min(n_errors, len(errors))} most confident errors",
                       lambda: image_grid(pred, errors[:n_errors], f"Most confident errors (of {len(errors)})")),
    }
    if history:
        drawings["curves.png"] = ("Training curves", lambda: curves_figure(history, swa_start))
    if scaled is not None:
        drawings["reliability.png"] = ("Reliability before and after temperature scaling",
                                       lambda: reliability_figure(pred.labels, scaled))
    if robustness:
        drawings["robustness.png"] = ("Accuracy under corruptions", lambda: robustness_figure(robustness))
    # Drawing the figures takes seconds: the stage says so as it starts.
    with Progress(len(drawings), f"writing the report in {out}", announce="stage") as progress:
        figures = {name: (caption, progress.step(name, draw)) for name, (caption, draw) in drawings.items()}
    for name, (_, image) in figures.items():
        runs.write_bytes(out / name, image)
    runs.write_text(out / "confusion.csv", _csv(
        [["true \\ predicted", *CLASSES]] + [[CLASSES[i], *map(int, row)] for i, row in enumerate(counts)]))
    score_rows = [[name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", s["support"]]
                  for name, s in scores.items()]
    score_header = ["class", "precision", "recall", "F1", "support"]
    runs.write_text(out / "scores.csv", _csv([score_header] + score_rows))
    runs.write_text(out / "errors.csv", errors_csv(pred, errors))
    runs.write_json(out / "report.json", {
        "headline": headline, "accuracy": pred.accuracy, "errors": len(errors),
        "confusion": counts.tolist(), "scores": scores})

    head_rows = [[k, v] for k, v in headline.items()]
    sections_html, sections_md = [], []
    for name, (caption, image) in figures.items():
        data = base64.b64encode(image).decode()
        extra_html = extra_md = ""
        if name == "scores.png":
            extra_html = html_table(score_header, score_rows)
            extra_md = md_table(score_header, score_rows) + "\n\n"
        if name == "errors.png":
            note = (f"Caption: true class, predicted class and its probability, image index. "
                    f"All {len(errors)} errors are in errors.csv.")
            extra_html, extra_md = f"<p>{html.escape(note)}</p>", note + "\n\n"
        sections_html.append(f"<h2>{html.escape(caption)}</h2>{extra_html}"
                             f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
        sections_md.append(f"## {caption}\n\n{extra_md}![{caption}]({name})\n")
    runs.write_text(out / "report.html", html_page(
        title, html_table(None, head_rows) + "".join(sections_html)))
    runs.write_text(out / "report.md", f"# {title}\n\n{md_table(['', ''], head_rows)}\n\n"
                    + "\n".join(sections_md))
    return out / "report.html"


def split_predictions(split: Split, probs: np.ndarray, labels: np.ndarray | None = None) -> Predictions:
    """``probs`` for the images of ``split``, whose labels they are
    unless ``labels`` says otherwise (the ten-class labels of a binary member's images)."""
    labels = split.labels.cpu().numpy() if labels is None else labels
    return Predictions(labels, probs, split.images.cpu().numpy()[:, 0], split.index.numpy())


def split_logits(run: LoadedModel, split: str) -> torch.Tensor:
    """A finished run's logits on one of its splits (said as they start: on a whole
    split, they take as long as evaluating it)."""
    return stage(f"{run.cfg.model}: predictions on the {split} split ({len(run.splits[split].labels):,} images)",
                 run.logits, run.splits[split].images)


def predictions(run: LoadedModel, split: str, temperature: bool = True) -> Predictions:
    """A finished run's predictions on one of its splits: its probabilities divided by
    its temperature (``temperature=False``: without it)."""
    probs = probabilities(split_logits(run, split), run.cfg.head, run.temperature if temperature else 1.0)
    return split_predictions(run.splits[split], probs.numpy())


def headline(subject: tuple[str, str], pred: Predictions, split: str, figures: dict[str, str],
             summary: Summary, tail: dict[str, str] | None = None,
             parameters_note: str = "", robustness: dict | None = None) -> dict[str, str]:
    """A report's headline table, the same for every kind of result, in the order a reader
    asks: what it is and what it was evaluated on, its own ``figures`` (accuracies first),
    how far its confidence can be trusted (ECE), how it holds up under corruptions (where
    ``robustness``, the run's record, is given), how long it trained and on what, then
    macro F1, size and ``tail``."""
    training = (f"{summary.train_seconds / 60:.1f} min ({summary.seconds_per_epoch:.1f} s/epoch, "
                f"{summary.epochs} epochs)" if summary.kind == "run" else
                f"{summary.train_seconds / 60:.1f} min in all")
    leak = ({"selection": f"{LEAKY.upper()}: the best of {summary.epochs} epochs on the test split "
                          f"(epoch {summary.extra.get('best_epoch', '?')}); its test figure is optimistic, "
                          "not an estimate of accuracy on new images"}
            if summary.leaky else {})
    return {subject[0]: subject[1],
            **leak,
            "evaluated on": f"{'validation' if split == 'val' else split} split, {len(pred.labels):,} images",
            **figures,
            "calibration error (ECE)": calibration_line(pred, split, summary),
            **({"accuracy under corruptions": robustness_line(robustness)} if robustness else {}),
            "training time": training,
            "trained on": summary.device,
            "macro F1": f"{class_scores(pred.labels, pred.predicted)['macro avg']['f1']:.4f}",
            "parameters": f"{summary.parameters:,}{parameters_note}",
            **(tail or {})}


def robustness_line(record: dict) -> str:
    """The headline's robustness: the mean corruption accuracy and its drop from clean."""
    scope = (f"{len(record['accuracy'])} corruptions at 5 severities" if record.get("complete") else
             "part of the corruptions")
    return (f"{100 * record['mca']:.2f}% mean over {scope} (clean {100 * record['clean_acc']:.2f}%, "
            f"relative drop {100 * record['relative_drop']:.1f}%; robustness.png)")


def calibration_line(pred: Predictions, split: str, summary: Summary) -> str:
    """The headline's ECE: before and after the summary's temperature scaling; where the
    summary has no scores of ``split`` (a run finished before temperature scaling, or one
    that evaluated no test split), the ECE of the probabilities the report shows."""
    scores = summary.calibration(split)
    if scores is not None:
        before, after = scores
        return (f"{before['ece']:.4f}, {after['ece']:.4f} after temperature scaling "
                f"(T = {summary.temperature:.3f}, fitted on validation; {BINS} bins)")
    shown = f"{ece(pred.probs, pred.labels):.4f}"
    if summary.temperature_scaling is None:
        return f"{shown} ({BINS} bins; no temperature fitted: fashionbench calibrate RUN_DIR fits one)"
    return f"{shown} after temperature scaling (T = {summary.temperature:.3f}; {BINS} bins)"


# The kinds of run a report is made of, and what is said of the others (a binary member).
REPORTED = (Kind.RUN, Kind.ONE_VS_ALL)
NOT_REPORTED = "is one binary member of a one-vs-all run; its parent folder has the report"


def report_run(finished: FinishedRun, data: FashionMNIST, split: str = "test",
               device: str | None = None, n_errors: int = 25) -> Path:
    """``RUN_DIR/report`` (``report-val`` for the validation split) for a finished run
    of a kind in REPORTED."""
    run_dir, summary = finished.path, finished.summary
    run = load_run(finished, data, device)
    scaled = TemperatureScaled.of(split_logits(run, split), run.cfg.head, run.temperature)
    pred = split_predictions(run.splits[split], scaled.after)  # as the run serves them
    figures = {}
    for weights, label in (("swa", "SWA model"), ("best_on_test", f"best epoch ({LEAKY})"),
                           ("last", "last-epoch model"), ("ova", "ten one-vs-all networks, calibrated")):
        if (acc := summary.accuracy(weights, split)) is not None:
            figures[f"accuracy, {label}"] = f"{100 * acc:.2f}%"
    figures["reported model"] = f"{summary.weights} (this report's figures)"
    robustness = finished.folder.read_robustness() if split == "test" else None
    head = headline(("model", summary.model), pred, split, figures, summary, {
        "precision": summary.precision, "seed": str(summary.seed)}, robustness=robustness)
    history = finished.folder.read_history() or None  # a one-vs-all run's are in its members' folders
    swa_start = run.cfg.swa.start_epoch if summary.extra.get("swa_snapshots") else None
    out = run_dir / (REPORT if split == "test" else f"{REPORT}-{split}")
    title = f"{summary.model}: {run_dir.name}" + (f" ({LEAKY.upper()})" if summary.leaky else "")
    return write_report(out, pred, title, head, history,
                        swa_start, n_errors, scaled,
                        robustness=robustness)

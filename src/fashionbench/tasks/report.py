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
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .. import runs
from ..calibration import BINS, probabilities
from ..config import LEAKY
from ..data import CLASSES, FashionMNIST
from ..inference import LoadedModel, load_run
from ..pages import html_page, html_table, md_table
from ..progress import Progress, stage
from ..rundir import REPORT, FinishedRun, Kind, Summary
from ..splits import Split
from .report_figures import (
    Predictions,
    TemperatureScaled,
    confusion_figure,
    curves_figure,
    ece,
    image_grid,
    reliability_figure,
    robustness_figure,
    scores_figure,
)


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
    for weights, label in (("swa", "SWA model"), ("ema", "moving average of the weights"),
                           ("best_on_test", f"best epoch ({LEAKY})"),
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

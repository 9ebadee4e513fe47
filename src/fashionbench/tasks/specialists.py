"""Specialists: a trained generalist, plus binary networks for the pairs of
classes it confuses most (on validation; for Fashion-MNIST shirt and T-shirt/top,
pullover and coat, shirt and coat).

A pair's specialist trains on that pair's images only, with the generalist's
recipe. It takes over when the generalist's top two classes are exactly its
pair and the generalist's margin between them is below a threshold; each
threshold is the one that maximizes validation accuracy (zero, never taking
over, is a candidate, so a specialist cannot lower validation accuracy). The
specialists are ordinary runs in ``OUT`` (``rundir.pair_name``), resumed when interrupted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from .. import runs
from ..calibration import log_of, temperature_scaling
from ..combine import combined_summary, split_scores
from ..config import Config, validate
from ..data import CLASSES, FashionMNIST
from ..errors import FashionbenchError
from ..inference import LoadedModel, load_run, predict
from ..progress import stage
from ..rundir import REPORT, SETUP, FinishedRun, Kind, RunDir, State, Summary
from ..training import train_or_resume
from .report import confusion, headline, split_predictions, write_report
from .report_figures import TemperatureScaled


def confused_pairs(counts: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The k pairs (i, j), i < j, with the most confusions in either direction."""
    both = counts + counts.T
    pairs = [(i, j) for i in range(len(both)) for j in range(i + 1, len(both))]
    return sorted(pairs, key=lambda p: -both[p])[:k]


def takes_over(probs: np.ndarray, pair: tuple[int, int], threshold: float) -> np.ndarray:
    """Rows whose top two classes are ``pair`` with a margin below ``threshold``."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(probs))
    margin = probs[rows, top[:, 0]] - probs[rows, top[:, 1]]
    return (np.sort(top, axis=1) == np.array(sorted(pair))).all(1) & (margin < threshold)


def apply(probs: np.ndarray, pair: tuple[int, int], p_first: np.ndarray, threshold: float) -> np.ndarray:
    """Where the specialist takes over, it splits the pair's probability mass."""
    out = probs.copy()
    rows = takes_over(probs, pair, threshold)
    mass = probs[rows][:, list(pair)].sum(1)
    out[rows, pair[0]] = p_first[rows] * mass
    out[rows, pair[1]] = (1 - p_first[rows]) * mass
    return out


def choose_threshold(probs: np.ndarray, labels: np.ndarray, pair: tuple[int, int],
                     p_first: np.ndarray) -> float:
    """The margin threshold with the best accuracy; the smallest among equals."""
    top = np.sort(probs, axis=1)[:, ::-1]
    margins = (top[:, 0] - top[:, 1])[takes_over(probs, pair, np.inf)]
    candidates = np.unique(np.concatenate([[0.0], margins + 1e-9]))
    accuracy = [(apply(probs, pair, p_first, t).argmax(1) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


# What a generalist must be, and what is said of any other kind of run.
GENERALIST, NOT_A_GENERALIST = (Kind.RUN,), "is not a ten-class run"


def check_specialists_dir(out: Path) -> None:
    """``out`` is new, or specialists interrupted there (resumed); never anything else."""
    folder = RunDir(out)
    if not folder.path.exists():
        return
    if folder.kind is not Kind.SPECIALISTS:
        raise FashionbenchError(f"{out} already exists and holds no specialists; choose another --name")
    if folder.state is State.COMPLETE:
        raise FashionbenchError(f"{out} already exists and is complete; choose another --name")


def train_specialists(run: FinishedRun, data: FashionMNIST, out: Path, pairs: int,
                      epochs: int | None = None, device: str | None = None) -> Summary:
    """Specialists for the generalist ``run`` (finished, of a kind in GENERALIST) in the folder ``out``."""
    general, general_summary, generalist = load_run(run, data, device), run.summary, run.path
    labels = {split: general.splits[split].labels.cpu().numpy() for split in ("val", "test")}
    # The generalist's own probabilities, without its temperature: the combination is
    # what is calibrated, as an ensemble's is.
    probs = stage(f"specialists: the generalist's predictions on val and test ({generalist})",
                  lambda: {split: general.probs(split, temperature=False).numpy() for split in labels})
    chosen = confused_pairs(confusion(labels["val"], probs["val"].argmax(1)), pairs)
    setup = {"generalist": str(generalist), "pairs": chosen, "epochs": epochs}
    setup_file = Path(out) / SETUP
    if setup_file.exists() and json.loads(setup_file.read_text()) != json.loads(json.dumps(setup)):
        raise FashionbenchError(f"{out} holds specialists of another setup; choose another --name")
    runs.write_json(setup_file, setup)

    def first_class_probs(spec: LoadedModel) -> dict[str, np.ndarray]:
        """A specialist's probability of its pair's first class, on the generalist's images."""
        return {split: predict(spec.model, general.splits[split].images, spec.precision,
                               spec.cfg.channels_last).softmax(1)[:, 1].numpy() for split in labels}

    combined = dict(probs)
    specialists, summaries = [], [general_summary]
    for k, (i, j) in enumerate(chosen, 1):
        run_dir = RunDir(out).pair(i, j).path
        cfg: Config = validate(dataclasses.replace(  # validate: resolves swa.start at these epochs
            general.cfg, epochs=epochs or general.cfg.epochs,
            data=dataclasses.replace(general.cfg.data, positive_class=i, negative_class=j)))
        label = f"[{k}/{len(chosen)}] {CLASSES[i]} against {CLASSES[j]}"
        spec_summary = train_or_resume(cfg, data, run_dir, label)
        spec = load_run(RunDir(run_dir, spec_summary).finished(), data, device)
        summaries.append(spec_summary)
        p_first = stage(f"{label}: the specialist's predictions on val and test", first_class_probs, spec)
        threshold = choose_threshold(combined["val"], labels["val"], (i, j), p_first["val"])
        for split in labels:
            combined[split] = apply(combined[split], (i, j), p_first[split], threshold)
        specialists.append({"pair": [CLASSES[i], CLASSES[j]], "run": str(run_dir), "threshold": threshold,
                            "takes_over_on_test": int(takes_over(probs["test"], (i, j), threshold).sum()),
                            "on_its_pair": spec_summary.reported})
    results = split_scores(combined, labels)
    alone = {split: float((probs[split].argmax(1) == labels[split]).mean()) for split in labels}
    trained = [Path(generalist)] + [Path(s["run"]) for s in specialists]
    summary = combined_summary(
        "specialists", general.cfg.model, "specialists",
        {"specialists": results, "generalist": {s: {"acc": a} for s, a in alone.items()}},
        trained, summaries, labels, data, seed=general_summary.seed,
        variant=f"generalist + {len(chosen)} specialists",
        temperature_scaling=temperature_scaling({split: log_of(p) for split, p in combined.items()},
                                                {split: torch.from_numpy(y) for split, y in labels.items()}),
        extra={"generalist": str(generalist), "specialists": specialists})
    RunDir(out).write_summary(summary)
    pred = split_predictions(general.splits["test"], combined["test"])
    write_report(Path(out) / REPORT, pred, f"{general.cfg.model} + specialists: {Path(out).name}", headline(
        ("model", f"{general.cfg.model} generalist ({generalist}) + specialists for "
                  + "; ".join(" / ".join(s["pair"]) for s in specialists)), pred, "test",
        {"accuracy, with specialists": f"{100 * results['test']['acc']:.2f}%",
         "accuracy, generalist alone": f"{100 * alone['test']:.2f}%",
         "specialists took over": ", ".join(f"{s['takes_over_on_test']} ({' / '.join(s['pair'])})"
                                            for s in specialists) + " test images"}, summary),
                 scaled=TemperatureScaled.of(log_of(combined["test"]), "softmax", summary.temperature))
    return summary

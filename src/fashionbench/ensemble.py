"""Ensembles of finished runs, of any architectures.

Members' class probabilities are combined by their mean, by majority vote, or
by a weighted mean whose weights minimize the negative log-likelihood on the
validation split (the test set only ever sees the final combination).
Optionally each member also sees every image mirrored and averages the two
(test-time augmentation). An ensemble is written like a run: summary.json and
the same report, so ``fashionbench table`` lists it beside single models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import softmax

from . import runs
from .data import FashionMNIST
from .errors import FashionbenchError

METHODS = ("mean", "vote", "weighted")


def vote(probs: np.ndarray) -> np.ndarray:
    """Majority vote of the members' top classes, as a distribution whose argmax is
    the winner: (votes + 0.5 * mean probability) / (members + 0.5). A tie between
    classes goes to the one with the higher mean probability; half a probability
    can never outweigh a whole vote."""
    members = len(probs)
    votes = np.zeros(probs.shape[1:])
    np.add.at(votes, (np.arange(probs.shape[1])[None].repeat(members, 0), probs.argmax(2)), 1)
    return (votes + 0.5 * probs.mean(0)) / (members + 0.5)


def fit_weights(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Simplex weights (softmax of free parameters) minimizing validation NLL of
    the weighted mean of ``probs`` (members, N, classes)."""
    picked = probs[:, np.arange(len(labels)), labels]  # (members, N)

    def nll(theta: np.ndarray) -> float:
        return -np.log(np.maximum(softmax(theta) @ picked, 1e-12)).mean()

    theta = minimize(nll, np.zeros(len(probs)), method="L-BFGS-B").x
    return softmax(theta)


def combine(probs: np.ndarray, method: str, weights: np.ndarray | None = None) -> np.ndarray:
    """(members, N, classes) -> (N, classes)."""
    if method == "mean":
        return probs.mean(0)
    if method == "vote":
        return vote(probs)
    return np.tensordot(weights, probs, axes=1)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())


def split_scores(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """Accuracy and NLL of combined probabilities, per split."""
    return {split: {"acc": float((probs[split].argmax(1) == labels[split]).mean()),
                    "loss": nll(probs[split], labels[split])} for split in probs}


def combined_summary(run_dirs: list[Path], summaries: list[dict], results: dict, labels: dict,
                     data: FashionMNIST) -> dict:
    """The summary fields of any combination of finished runs (an ensemble, one-vs-all,
    specialists): which runs, its scores, and their total size and cost."""
    return {
        "runs": [str(d) for d in run_dirs],
        "val_acc": results["val"]["acc"], "test_acc": results["test"]["acc"],
        "parameters": sum(s["parameters"] for s in summaries),
        "epochs": max(s["epochs"] for s in summaries), "train_size": summaries[0]["train_size"],
        "val_size": len(labels["val"]), "test_size": len(labels["test"]),
        "train_seconds": sum(s["train_seconds"] for s in summaries),
        "seconds_per_epoch": sum(s["seconds_per_epoch"] for s in summaries),
        "device": "; ".join(sorted({s["device"] for s in summaries})), "data_md5": data.md5,
    }


def ensemble_runs(run_dirs: list[Path], data: FashionMNIST, method: str, tta: bool, out: Path,
                  device: str | None = None) -> dict:
    """Combine finished runs into the ensemble folder ``out``; returns its summary."""
    from .engine import load_run
    from .leaderboard import read_summary
    from .report import class_scores, split_predictions, write_report

    summaries = [read_summary(d) for d in run_dirs]
    members = [load_run(d, data, device) for d in run_dirs]
    first = members[0].splits
    for run_dir, member in zip(run_dirs[1:], members[1:]):
        for split in ("val", "test"):
            if not torch.equal(member.splits[split].index, first[split].index):
                raise FashionbenchError(f"{run_dir} used other {split} images than {run_dirs[0]} "
                                        "(data.val_size, data.split_seed or data.test_subset differ)")

    def member_probs(split: str) -> np.ndarray:
        out = []
        for m in members:
            p = m.probs(split)
            if tta:
                p = (p + m.probs(split, flip=True)) / 2
            out.append(p.numpy())
        return np.stack(out)

    probs = {split: member_probs(split) for split in ("val", "test")}
    labels = {split: first[split].labels.cpu().numpy() for split in ("val", "test")}
    weights = fit_weights(probs["val"], labels["val"]) if method == "weighted" else None
    combined = {split: combine(probs[split], method, weights) for split in probs}
    results = split_scores(combined, labels)
    models = [s["model"] for s in summaries]
    name = " + ".join(f"{m} x{models.count(m)}" for m in dict.fromkeys(models))
    summary = {
        "model": f"ensemble {method}{' +flip' if tta else ''}: {name}", "kind": "ensemble",
        "method": method, "tta": "flip" if tta else None,
        "weights": None if weights is None else weights.tolist(),
        "results": {"ensemble": results,
                    "members": {str(d): s["results"][s["weights"]] for d, s in zip(run_dirs, summaries)}},
        "seed": "+".join(str(s["seed"]) for s in summaries),
        **combined_summary(run_dirs, summaries, results, labels, data),
    }
    runs.write_json(out / "summary.json", summary)
    pred = split_predictions(first["test"], combined["test"])
    member_accs = ", ".join(f"{100 * s['test_acc']:.2f}%" for s in summaries)
    headline = {
        "ensemble": f"{len(run_dirs)} runs ({name}), {method}{', flip TTA' if tta else ''}",
        "evaluated on": f"test split, {len(pred.labels):,} images",
        "accuracy, ensemble": f"{100 * results['test']['acc']:.2f}%",
        "accuracy, members": member_accs,
        "macro F1": f"{class_scores(pred.labels, pred.predicted)['macro avg']['f1']:.4f}",
        "parameters": f"{summary['parameters']:,}",
        "training time": f"{summary['train_seconds'] / 60:.1f} min in all",
    }
    if weights is not None:
        headline["weights (fitted on validation)"] = ", ".join(f"{w:.3f}" for w in weights)
    write_report(out / "report", pred, f"{summary['model']}: {out.name}", headline)
    return summary

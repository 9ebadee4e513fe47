"""Combining finished runs' predictions: the rules (mean, majority vote, weights
fitted on validation), their scores, and the summary every combination writes
(ensembles, one-vs-all, specialists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax

from .data import FashionMNIST
from .rundir import Summary

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


def combined_summary(kind: str, model: str, weights: str, results: dict, run_dirs: list[Path],
                     summaries: list[Summary], labels: dict, data: FashionMNIST, seed: int | str,
                     extra: dict | None = None, **fields) -> Summary:
    """The summary of a combination of finished runs: its scores (``results[weights]``),
    which runs it combines (beside the kind's own ``extra``), and their total size and
    cost, and whether a member was selected on the test set; ``fields`` sets the rest
    (variant, precision)."""
    scores = results[weights]
    return Summary(
        kind=kind, model=model, weights=weights, results=results, seed=seed,
        val_acc=scores["val"]["acc"], test_acc=scores["test"]["acc"],
        parameters=sum(s.parameters for s in summaries),
        epochs=max(s.epochs for s in summaries), train_size=summaries[0].train_size,
        val_size=len(labels["val"]), test_size=len(labels["test"]),
        train_seconds=sum(s.train_seconds for s in summaries),
        val_seconds=(None if any(s.val_seconds is None for s in summaries)
                     else sum(s.val_seconds for s in summaries)),
        seconds_per_epoch=sum(s.seconds_per_epoch for s in summaries),
        device="; ".join(sorted({s.device for s in summaries})), data_md5=data.md5,
        # A member chosen on the test set leaks into the combination: it is marked too.
        selected_on="test" if any(s.leaky for s in summaries) else "val",
        extra={"runs": [str(d) for d in run_dirs], **(extra or {})}, **fields)

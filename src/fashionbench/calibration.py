"""Calibration: how far a model's confidence is from how often it is right, and
temperature scaling, which brings them closer without changing any prediction.

A result's calibration is scored three ways on a split (``scores``): the expected
calibration error (ECE: the top-label confidence in 15 equal-width bins, each bin's
|accuracy - mean confidence| weighted by its share of the images; torchmetrics'
``multiclass_calibration_error``), the negative log-likelihood of the true class and the
Brier score (the mean over images of the squared distance, summed over classes, between
the probabilities and the one-hot label). Temperature scaling (Guo et al., "On
Calibration of Modern Neural Networks", 2017) divides a model's logits by one scalar T,
fitted on the validation split by minimizing its NLL (``fit_temperature``); the test
split never sees the fit. ``temperature_scaling`` makes the summary's entry: T, and the
three scores on each split before and after.

What is scaled, by head: the softmax head's logits; the one-vs-all head's (``head ova``)
logits before their sigmoids (its probabilities are the sigmoids normalized to sum to 1,
and each sigmoid is monotone, so T changes no prediction there either); a one-vs-all
run's model outputs normalized log-probabilities (its members' Platt scaling), which
are scaled as logits are (p^(1/T), renormalized); a combination of runs (an ensemble,
specialists) has probabilities only, scaled the same way through their logarithms
(``log_of``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

BINS = 15                     # equal-width confidence bins of the ECE and the reliability diagram
TEMPERATURE_RANGE = (0.05, 20.0)  # where T is searched: far beyond what a trained network needs
FLOOR = 1e-12                 # a combination's probability of 0 as a logarithm (combine.nll's floor too)


def probabilities(logits: torch.Tensor, head: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """Class probabilities of ``logits`` / ``temperature``: softmax, or the one-vs-all
    head's sigmoids normalized to sum to 1."""
    if temperature != 1.0:
        logits = logits / temperature
    if head == "softmax":
        return logits.softmax(1)
    p = logits.sigmoid()
    return p / p.sum(1, keepdim=True)


def log_probabilities(logits: torch.Tensor, head: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """``probabilities``' logarithms, in float64 and in log space (a confident mistake's
    probability of the true class is no 0 there, so its NLL stays finite)."""
    z = logits.double() / temperature
    if head == "softmax":
        return z.log_softmax(1)
    log_p = F.logsigmoid(z)
    return log_p - log_p.logsumexp(1, keepdim=True)


def log_of(probs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A combination's probabilities as logits (their logarithms, 0 floored at FLOOR):
    softmax of them gives the probabilities back, and dividing them by T scales them."""
    return torch.as_tensor(np.asarray(probs, dtype=np.float64)).clamp_min(FLOOR).log()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """The top-label ECE (L1) of ``probs`` (N, C) in ``bins`` equal-width bins, by torchmetrics."""
    # torchmetrics imports matplotlib's pyplot and much else (about a second): only when
    # a score is made, not by every command. fashionbench's backend is chosen first.
    from torchmetrics.functional.classification import multiclass_calibration_error

    from . import figures  # noqa: F401

    return float(multiclass_calibration_error(probs.double(), labels.long(), num_classes=probs.shape[1],
                                              n_bins=bins, norm="l1"))


def scores(log_probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict[str, float]:
    """ECE, NLL and Brier score of the log-probabilities ``log_probs`` (N, C) of the true
    classes ``labels`` (N,)."""
    log_probs, labels = log_probs.double().cpu(), labels.long().cpu()
    probs = log_probs.exp()
    onehot = F.one_hot(labels, probs.shape[1]).double()
    return {"ece": expected_calibration_error(probs, labels, bins),
            "nll": float(-log_probs.gather(1, labels[:, None]).mean()),
            "brier": float(((probs - onehot) ** 2).sum(1).mean())}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, head: str = "softmax") -> float:
    """The T in TEMPERATURE_RANGE that minimizes the NLL of ``logits`` / T (a bounded 1-D
    search on log T: deterministic, and NLL is convex in 1/T for the softmax)."""
    logits, labels = logits.double().cpu(), labels.long().cpu()[:, None]

    def nll(log_t: float) -> float:
        return float(-log_probabilities(logits, head, math.exp(log_t)).gather(1, labels).mean())

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    # The search never evaluates T = 1 itself: keep 1 where it is as good (a model
    # already calibrated, or one that predicts every image alike).
    return float(math.exp(found.x)) if found.fun < nll(0.0) else 1.0


def temperature_scaling(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                        head: str = "softmax") -> dict:
    """A summary's ``temperature_scaling`` entry: T fitted on ``logits["val"]``, and the
    scores of every split in ``logits`` ("val", and "test" where it was evaluated) before
    and after dividing by it."""
    temperature = fit_temperature(logits["val"], labels["val"], head)
    return {"temperature": temperature, "fitted_on": "val", "bins": BINS,
            **{when: {split: scores(log_probabilities(z, head, t), labels[split]) for split, z in logits.items()}
               for when, t in (("before", 1.0), ("after", temperature))}}


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, np.ndarray]:
    """What a reliability diagram draws, per equal-width bin of top-label confidence:
    ``count``, ``confidence`` (mean) and ``accuracy`` (NaN where a bin is empty). A
    confidence of exactly 1 goes to the last bin (torchmetrics' ECE counts it apart)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        return {"count": count,
                "confidence": np.bincount(which, confidence, bins) / count,
                "accuracy": np.bincount(which, correct.astype(float), bins) / count}

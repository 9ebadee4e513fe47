"""Ten one-vs-all binary networks, one per class (the reference project's "future work").

Each member is an ordinary run, ``RUN_DIR/class-C``, trained with the model's
recipe on "class C against the rest" with class-balanced batches (half
positives), so a member never learns that answering "no" is right 90% of the
time. A member that is complete is kept and one that was interrupted resumed,
so the whole run resumes member by member. The members' scores are not
comparable as they are, so each is calibrated on the validation split with Platt
scaling (a logistic regression on its logit margin); the ten calibrated
probabilities, normalized, are the run's prediction. The ten networks and their
calibration are saved together as the run's model.pt (``OneVsAllNetwork``), so
that every command taking a finished run takes this one. The test set is used
once, at the end.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from . import runs
from .config import Config, dump_config
from .data import CLASSES, FashionMNIST
from .ensemble import combined_summary, split_scores
from .models.one_vs_all import OneVsAllNetwork


def member_config(cfg: Config, c: int) -> Config:
    return dataclasses.replace(cfg, one_vs_all=False,
                               data=dataclasses.replace(cfg.data, positive_class=c))


def platt_scale(margins: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * margin + b), fitted by maximum likelihood."""
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(margins[:, None], positive)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def train_one_vs_all(cfg: Config, data: FashionMNIST, run_dir: Path) -> dict:
    from .engine import FinishedRun, load_run, place_model, train
    from .leaderboard import read_summary
    from .report import class_scores, split_predictions, write_report

    run_dir = Path(run_dir)
    runs.write_text(run_dir / "config.yaml", dump_config(cfg))
    members = []
    for c, name in enumerate(CLASSES):
        member_dir = run_dir / f"class-{c}"
        if (member_dir / "summary.json").exists():
            print(f"[{c + 1}/10] {name} against the rest: already complete", flush=True)
        else:
            resume = (member_dir / "checkpoint.pt").exists()
            print(f"[{c + 1}/10] {name} against the rest: {'resuming' if resume else 'training'} "
                  f"in {member_dir}", flush=True)
            train(member_config(cfg, c), data, member_dir, resume=resume)
        members.append(member_dir)

    loaded = [load_run(d, data) for d in members]
    splits = loaded[0].splits
    labels = {split: data_labels(data, split, splits[split].index.numpy()) for split in ("val", "test")}
    calibration = []
    for c, member in enumerate(loaded):
        logits = member.predict("val").numpy()
        calibration.append(platt_scale(logits[:, 1] - logits[:, 0], labels["val"] == c))
    # The run's model: the ten networks and their calibration as one 10-class network.
    a, b = (torch.tensor(v) for v in zip(*calibration))
    combined = place_model(OneVsAllNetwork([m.model for m in loaded], a, b), splits["val"].images.device,
                           cfg.channels_last).eval()
    runs.save_torch(run_dir / "model.pt", {"model": cfg.model, "kind": "one-vs-all", "weights": "ova",
                                           "num_classes": len(CLASSES), "state_dict": combined.state_dict()})
    run = FinishedRun(cfg, combined, "ova", splits, loaded[0].precision)
    probs = {split: run.probs(split).numpy().astype(np.float64) for split in labels}
    results = split_scores(probs, labels)
    member_summaries = [read_summary(d) for d in members]
    summary = {
        "model": cfg.model, "variant": "one-vs-all, 10 binary", "weights": "ova",
        "results": {"ova": results},
        "calibration": [{"class": CLASSES[c], "a": a, "b": b} for c, (a, b) in enumerate(calibration)],
        "members": {CLASSES[c]: s["results"][s["weights"]] for c, s in enumerate(member_summaries)},
        "seed": cfg.seed, "precision": member_summaries[0]["precision"],
        **{k: member_summaries[0][k] for k in ("python", "torch", "git_commit") if k in member_summaries[0]},
        **combined_summary(members, member_summaries, results, labels, data),
    }
    runs.write_json(run_dir / "summary.json", summary)
    pred = split_predictions(splits["test"], probs["test"], labels["test"])
    write_report(run_dir / "report", pred, f"{cfg.model}, ten one-vs-all networks: {run_dir.name}", {
        "model": f"{cfg.model}, ten binary one-vs-all networks, Platt-calibrated on validation",
        "evaluated on": f"test split, {len(pred.labels):,} images",
        "accuracy": f"{100 * results['test']['acc']:.2f}%",
        "macro F1": f"{class_scores(pred.labels, pred.predicted)['macro avg']['f1']:.4f}",
        "parameters": f"{summary['parameters']:,} (10 networks)",
        "training time": f"{summary['train_seconds'] / 60:.1f} min in all",
        "seed": str(cfg.seed),
    })
    return summary


def data_labels(data: FashionMNIST, split: str, index: np.ndarray) -> np.ndarray:
    """The ten-class labels of a split's images (members see binary ones)."""
    source = data.test_labels if split == "test" else data.train_labels
    return source.numpy()[index]

"""``fashionbench one-vs-all``: ten binary networks, one per class (the reference
project's "future work").

Each member is an ordinary run in its own folder (``rundir.member_name``), trained with the model's
recipe on "class C against the rest" with class-balanced batches (half
positives), so a member never learns that answering "no" is right 90% of the
time. A member that is complete is kept and one that was interrupted resumed,
so the whole run resumes member by member. The members' scores are not
comparable as they are, so each is calibrated on the validation split with Platt
scaling (a logistic regression on its logit margin); the ten calibrated
probabilities, normalized, are the run's prediction. The ten networks and their
calibration are saved together as the run's model (``OneVsAllNetwork``), so that
every command taking a finished run takes this one. The test set is used
once, at the end.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from .. import runs
from ..calibration import temperature_scaling
from ..combine import combined_summary, split_scores
from ..config import Config, ConfigError
from ..data import CLASSES, FashionMNIST
from ..inference import LoadedModel, load_model, place_model, predict
from ..models.one_vs_all import OneVsAllNetwork
from ..plan import training_plan
from ..progress import Progress
from ..rundir import REPORT, RunDir, Summary, member_name
from ..splits import prepare_splits
from ..tracking import TrackedRun, Tracking, flatten, group, machine_tags, track
from ..training import train_or_resume
from .report import headline, split_predictions, write_report
from .report_figures import TemperatureScaled


def check_one_vs_all_config(cfg: Config) -> None:
    """One-vs-all sets each member's task itself, from a ten-class softmax recipe."""
    if cfg.head != "softmax":
        raise ConfigError("one-vs-all trains ten binary networks with softmax heads; head=ova is the "
                          "one-network form of one-vs-all (fashionbench train --head ova)")
    if cfg.data.positive_class is not None:
        raise ConfigError("one-vs-all sets data.positive_class for each member itself; leave it unset")


def member_config(cfg: Config, c: int) -> Config:
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, positive_class=c))


def platt_scale(margins: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * margin + b), fitted by maximum likelihood."""
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(margins[:, None], positive)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def one_vs_all_plan(cfg: Config, run_dir: Path) -> str:
    """``--dry-run``: what ``train_one_vs_all`` would do."""
    lines = [f"ten binary networks ({CLASSES[0]} against the rest, ...), each:"]
    lines += ["  " + line for line in training_plan(member_config(cfg, 0))]
    lines.append(f"run folder: {run_dir} ({member_name(0)} ... {member_name(len(CLASSES) - 1)}, "
                 "then the combined report)")
    return "\n".join(lines)


def train_one_vs_all(cfg: Config, data: FashionMNIST, run_dir: Path, tracking: Tracking | None = None) -> Summary:
    """Train (or resume, or keep) the ten members in ``run_dir``, calibrate and combine
    them, and write the run's model, summary and report; logged where ``tracking`` says
    (in MLflow, the members nested under the combined run)."""
    folder = RunDir(run_dir)
    run_dir = folder.path
    members = [folder.member(c) for c in range(len(CLASSES))]
    runs.make_dir(members[0].path)  # first: it makes the folder one-vs-all's (rundir), however early it stopped
    folder.write_config(cfg)
    with group(tracking, run_dir.name, run_dir) as parent:
        parent.start(flatten(cfg.to_dict()), machine_tags(runs.environment()))
        member_summaries = [train_member(cfg, c, data, d.path, tracking, parent) for c, d in enumerate(members)]
        summary = combine_members(cfg, data, folder, members, member_summaries)
        parent.finish(summary, run_dir)
    return summary


def train_member(cfg: Config, c: int, data: FashionMNIST, member_dir: Path, tracking: Tracking | None,
                 parent: TrackedRun) -> Summary:
    """Member ``c`` trained (or resumed, or read back), logged under ``parent``."""
    with track(tracking, member_dir, f"{parent.name}/{member_name(c)}", parent) as tracked:
        summary = train_or_resume(member_config(cfg, c), data, member_dir,
                                  f"[{c + 1}/10] {CLASSES[c]} against the rest", hooks=tracked.hooks)
        tracked.finish(summary, member_dir)
    return summary


def combine_members(cfg: Config, data: FashionMNIST, folder: RunDir, members: list[RunDir],
                    member_summaries: list[Summary]) -> Summary:
    """The ten trained members calibrated and combined: the run's model, summary and report."""
    run_dir = folder.path
    # Each network predicts each split once, on one copy of the splits (ten-class labels):
    # its validation margins are calibrated, and the calibrated margins are the run's
    # predictions, as its model gives them.
    loaded = [load_model(RunDir(d.path, s).finished()) for d, s in zip(members, member_summaries)]
    device, precision = loaded[0].device, loaded[0].precision
    splits = prepare_splits(data, cfg, device)
    labels = {split: splits[split].labels.cpu().numpy() for split in ("val", "test")}

    def member_logits(member: LoadedModel) -> dict[str, torch.Tensor]:
        return {split: predict(member.model, splits[split].images, precision, cfg.channels_last) for split in labels}

    with Progress(len(loaded), "one-vs-all: each network's predictions on val and test, calibrated on val",
                  announce="stage") as progress:
        logits = [progress.step(CLASSES[c], member_logits, m) for c, m in enumerate(loaded)]
    margins = {split: OneVsAllNetwork.margins([z[split] for z in logits]) for split in labels}
    calibration = [platt_scale(margins["val"][:, c].numpy(), labels["val"] == c) for c in range(len(CLASSES))]
    # The run's model: the ten networks and their calibration as one 10-class network.
    a, b = (torch.tensor(v) for v in zip(*calibration))
    combined = OneVsAllNetwork([m.model for m in loaded], a, b)
    log_probs = {split: combined.log_probs(margins[split]) for split in labels}
    probs = {split: z.softmax(1).numpy().astype(np.float64) for split, z in log_probs.items()}
    # Its outputs are the logits a temperature divides (calibration.py).
    calibrated = temperature_scaling(log_probs, {split: torch.from_numpy(y) for split, y in labels.items()})
    combined = place_model(combined, device, cfg.channels_last).eval()
    folder.write_model(combined, cfg.model, "ova", len(CLASSES))
    results = split_scores(probs, labels)
    first = member_summaries[0]
    summary = combined_summary(
        "one-vs-all", cfg.model, "ova", {"ova": results}, [m.path for m in members], member_summaries, labels, data,
        seed=cfg.seed, variant="one-vs-all, 10 binary", precision=first.precision, temperature_scaling=calibrated,
        extra={"calibration": [{"class": CLASSES[c], "a": a, "b": b} for c, (a, b) in enumerate(calibration)],
               "members": {CLASSES[c]: s.reported for c, s in enumerate(member_summaries)},
               **{k: first.extra[k] for k in ("python", "torch", "git_commit") if k in first.extra}})
    folder.write_summary(summary)
    scaled = TemperatureScaled.of(log_probs["test"], "softmax", summary.temperature)
    pred = split_predictions(splits["test"], scaled.after, labels["test"])  # as its model serves them
    write_report(run_dir / REPORT, pred, f"{cfg.model}, ten one-vs-all networks: {run_dir.name}", headline(
        ("model", f"{cfg.model}, ten binary one-vs-all networks, Platt-calibrated on validation"), pred, "test",
        {"accuracy": f"{100 * results['test']['acc']:.2f}%"}, summary, {"seed": str(cfg.seed)},
        parameters_note=" (10 networks)"), scaled=scaled)
    return summary

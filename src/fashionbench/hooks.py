"""Hooks: what a run does beside training its model, each feature in a class of its own
that the trainer calls at fixed points of its loop, in the manner of Lightning's
callbacks (``StochasticWeightAveraging``, ``ModelCheckpoint``) and timm's CheckpointSaver.

The trainer's loop, and where it calls its hooks:

- the start of ``fit``, once the run folder and its config are written: ``on_start``
  (a new run's, or a resumed run's before its next epoch);
- every step: ``on_step`` after the update, with the loss and logits on the device;
  ``on_sync`` every 20 steps and at an epoch's last, where the trainer reads its own
  figures back from the device anyway (a GPU waits there, so the hooks read theirs);
- every epoch's end: the splits the hooks name in ``splits`` evaluated beside val,
  ``on_epoch_end`` with the metrics row before it is saved, the checkpoint (every hook's
  ``state_dict`` under its ``key``), then ``on_checkpoint``;
- the finish: the last weights and each hook's ``final_models`` evaluated, the last
  one listed reported; each hook's ``summary`` entries in the run's summary.

The trainer calls its hooks in their order (``own_hooks``): ``DivergenceWatch`` first (a
diverged run stops before anything else sees its epoch), ``StochasticWeightAveraging``,
``ExponentialMovingAverage`` where ema.enabled, then ``BestOnTest`` where eval.select_on
is test (of the final models, the last listed is the one reported), then the caller's
(``train_or_resume``'s ``hooks``, e.g. tracking/'s ``TrackedRun``; then ``EpochCallback``,
its ``on_epoch``).

A hook is handed the trainer (``training.Trainer``, which this module, beneath it,
does not import) and reads what it needs of it: ``model``, ``plan``, ``splits``,
``epoch``, ``world``, ``diverged()``. Under torchrun every process calls every hook but
the finish's, which rank 0 alone runs.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.optim import swa_utils

from . import distributed
from .errors import FashionbenchError
from .hardware import autocast
from .schedule import SchedulePlan
from .splits import Split, normalize, to_float

# A training loss above this multiple of the run's first one has diverged (a healthy
# run's loss falls from its start; a spike of a few times recovers, twenty does not).
DIVERGED = 20.0


class Diverged(FashionbenchError):
    """A non-finite or exploding loss: the run stops, and nothing of it is published."""


class FinalModel(NamedTuple):
    """A model of the final evaluation: ``make()`` gives it, when its turn comes."""
    name: str                           # its key in the summary's results (and weights, if reported)
    make: Callable[[], nn.Module]
    making: str | None = None           # where making it takes a while: that step's label in the progress


class Hook:
    """A hook does nothing at any point it does not override."""
    key: str | None = None              # its state's key in the checkpoint's "hooks"; None: it keeps none
    splits: tuple[str, ...] = ()        # evaluated after every epoch beside val: SPLIT_loss, SPLIT_acc in the row

    def on_start(self, trainer) -> None:
        """Before the first epoch this process trains (``trainer.epoch`` counts those a
        resumed run trained before), the run folder made and its config written."""

    def on_step(self, trainer, step: int, loss: torch.Tensor, logits: torch.Tensor) -> None:
        """After global ``step``'s update (1-based). ``loss`` and ``logits`` (detached)
        stay on the device: reading one would make a GPU wait at every step."""

    def on_sync(self, trainer, step: int) -> None:
        """Where the trainer reads its figures from the device (every 20 steps and at an
        epoch's last): a hook may read its own, and stop the run. Under torchrun every
        process calls it, in step: a collective is safe here."""

    def on_epoch_end(self, trainer, row: dict) -> None:
        """The epoch's metrics row, validated and timed, before it is printed and saved:
        a hook may add keys or stop the run (``trainer.epoch`` still counts the epochs before)."""

    def on_checkpoint(self, trainer, row: dict) -> None:
        """After the epoch's checkpoint is written: a run stopped here resumes from it."""

    def final_models(self, trainer) -> list[FinalModel]:
        """The models this hook adds to the final evaluation (rank 0 alone)."""
        return []

    def summary(self, trainer) -> dict:
        """This hook's entries in the run's summary."""
        return {}

    def state_dict(self):
        return None

    def load_state_dict(self, state) -> None:
        """``state`` as ``state_dict`` gave it, or None where the checkpoint has none."""

    def old_state(self, checkpoint: dict):
        """This hook's state in a checkpoint written before hooks (by fashionbench up to
        13501e8), which kept it at the checkpoint's top level, in ``load_state_dict``'s terms."""
        return None


class DivergenceWatch(Hook):
    """Stops a run whose training loss leaves DIVERGED times its first one or is not
    finite (watched at every step on the device, read at every sync: under torchrun the
    first bad step of any process, so that every process stops together), or whose
    validation loss is not finite at an epoch's end. The message is ``trainer.diverged``'s."""
    key = "divergence"

    def __init__(self, device: torch.device):
        self.device = device
        self.loss_start: torch.Tensor | None = None  # the run's first training loss
        # The first step (and its loss) where the loss diverged, kept on the device so that
        # watching every step costs no synchronization. Zero again at every epoch's end:
        # its last step is a sync, where a bad step stops the run.
        self.bad_step = torch.zeros((), dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def on_step(self, trainer, step, loss, logits):
        if self.loss_start is None:
            self.loss_start = loss
        diverged = (self.bad_step == 0) & ~(loss <= DIVERGED * self.loss_start)  # NaN compares False
        self.bad_step = torch.where(diverged, step, self.bad_step)
        self.bad_loss = torch.where(diverged, loss, self.bad_loss)

    def on_sync(self, trainer, step):
        if trainer.world.distributed:
            self.bad_step = distributed.all_max(self.bad_step.clone())
        if self.bad_step.item():
            steps = trainer.steps_per_epoch
            raise trainer.diverged(f"at epoch {trainer.epoch + 1}, step "
                                   f"{self.bad_step.item() - trainer.epoch * steps} of {steps} "
                                   f"(training loss {self.bad_loss.item():.4g}, "
                                   f"first {self.loss_start.item():.4g})")

    def on_epoch_end(self, trainer, row):
        if not math.isfinite(row["val_loss"]):
            raise trainer.diverged(f"at epoch {trainer.epoch + 1}'s end (validation loss {row['val_loss']})")

    def state_dict(self):
        return {"loss_start": None if self.loss_start is None else self.loss_start.item()}

    def load_state_dict(self, state):
        if state is not None and state["loss_start"] is not None:
            self.loss_start = torch.tensor(state["loss_start"], device=self.device)

    def old_state(self, checkpoint):
        return {"loss_start": checkpoint.get("loss_start")}  # checkpoints before it had none


def bn_batches(split: Split, batch_size: int, channels_last: bool):
    """Un-augmented training batches in a fixed order, for recomputing BatchNorm statistics."""
    for i in range(0, len(split.labels), batch_size):
        yield normalize(to_float(split.images[i:i + batch_size]), channels_last)


class StochasticWeightAveraging(Hook):
    """SWA (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
    Generalization", 2018): the weights averaged after the steps the plan says
    (``SchedulePlan.snapshot_steps``), the average's BatchNorm statistics recomputed at
    the finish, and the average reported over the last weights. Every run has this hook:
    where SWA is off, or cannot average in the run's epochs, it averages nothing and
    counts 0 snapshots (the row's and the summary's swa_snapshots)."""
    key = "swa"

    def __init__(self, plan: SchedulePlan, model: nn.Module, quiet: bool = False):
        self.plan = plan
        self.averaged = swa_utils.AveragedModel(model) if plan.averaging else None
        self.bn_seconds = 0.0  # the BatchNorm recompute, part of making the final model (a speedrun times it)
        # A budget too short to average is the user's choice, not a mistake: say so, go on.
        if plan.cfg.swa.enabled and not plan.averaging and not quiet:
            print(f"fashionbench: warning: {plan.skipped()}", file=sys.stderr, flush=True)

    @property
    def snapshots(self) -> int:
        return int(self.averaged.n_averaged) if self.averaged else 0

    def on_step(self, trainer, step, loss, logits):
        if self.averaged is not None and self.plan.snapshot_due(step):
            self.averaged.update_parameters(trainer.model)

    def on_epoch_end(self, trainer, row):
        row["swa_snapshots"] = self.snapshots

    def recompute_bn(self, trainer) -> float:
        """The averaged weights' BatchNorm statistics, recomputed on the training split
        (averaged weights need statistics of their own: Izmailov et al. 2018); returns
        the seconds it took."""
        start = time.perf_counter()
        with autocast(trainer.device, trainer.precision):
            swa_utils.update_bn(bn_batches(trainer.splits["train"], trainer.cfg.batch_size,
                                           trainer.cfg.channels_last), self.averaged, trainer.device)
        return time.perf_counter() - start

    def final_models(self, trainer):
        if self.averaged is None:
            return []
        # Said where the SWA model is made, not up front: a run that fails before never makes one.
        if lone_snapshot := self.plan.lone_snapshot():
            print(f"fashionbench: warning: {lone_snapshot}", file=sys.stderr, flush=True)

        def make() -> nn.Module:
            self.bn_seconds = self.recompute_bn(trainer)
            return self.averaged.module
        return [FinalModel("swa", make, "SWA BatchNorm statistics")]

    def summary(self, trainer):
        return {"swa_snapshots": self.snapshots, "swa_bn_seconds": self.bn_seconds}

    def state_dict(self):
        return self.averaged.state_dict() if self.averaged else None

    def load_state_dict(self, state):
        if self.averaged is not None:
            self.averaged.load_state_dict(state)

    def old_state(self, checkpoint):
        return checkpoint.get("swa_model")


class ExponentialMovingAverage(Hook):
    """An exponential moving average of the weights and BatchNorm statistics (``ema``),
    reported over the last weights: every ``ema.every`` steps from ``ema.start`` of the
    run, ``average = decay * average + (1 - decay) * weights`` (the first update copies
    them). airbench (Jordan, 2024) averages so in its short CIFAR-10 runs, where the
    last steps' weights still wander; its statistics are averaged with the weights
    (``use_buffers``), so unlike SWA's nothing is recomputed at the finish."""
    key = "ema"

    def __init__(self, plan: SchedulePlan, model: nn.Module):
        self.steps, self.lookahead = plan.ema_steps, plan.cfg.ema.lookahead
        self.averaged = swa_utils.AveragedModel(
            model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(plan.cfg.ema.decay), use_buffers=True)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def on_step(self, trainer, step, loss, logits):
        if step in self.steps:
            self.averaged.update_parameters(trainer.model)
            if self.lookahead:  # training goes on from the average (BatchNorm's statistics too)
                with torch.no_grad():
                    for average, current in zip(self.averaged.module.state_dict().values(),
                                                trainer.model.state_dict().values(), strict=True):
                        if current.is_floating_point():
                            current.copy_(average)

    def on_epoch_end(self, trainer, row):
        row["ema_updates"] = self.updates

    def final_models(self, trainer):
        return [FinalModel("ema", lambda: self.averaged.module)]  # ema.start < 1: at least one update

    def summary(self, trainer):
        return {"ema_updates": self.updates}

    def state_dict(self):
        return self.averaged.state_dict()

    def load_state_dict(self, state):
        if state is not None:
            self.averaged.load_state_dict(state)


class BestOnTest(Hook):
    """The leaky reference protocol (eval.select_on test): the test split evaluated after
    every epoch, and the epoch with the best test accuracy reported, its weights kept (on
    the CPU) as a Keras ModelCheckpoint(monitor test accuracy, save_best_only) keeps them:
    a later epoch replaces it only by doing strictly better. Its test accuracy is
    optimistic, and the summary says so (selected_on test)."""
    key = "best_on_test"
    splits = ("test",)

    def __init__(self):
        self.best: dict | None = None  # epoch, acc, state

    def on_epoch_end(self, trainer, row):
        if self.best is None or row["test_acc"] > self.best["acc"]:
            self.best = {"epoch": row["epoch"], "acc": row["test_acc"],
                         "state": {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}}

    def final_models(self, trainer):
        def make() -> nn.Module:
            model = copy.deepcopy(trainer.model)
            model.load_state_dict(self.best["state"])
            return model
        return [FinalModel("best_on_test", make)]

    def summary(self, trainer):
        return {"best_epoch": self.best["epoch"]}

    def state_dict(self):
        return self.best

    def load_state_dict(self, state):
        self.best = state

    def old_state(self, checkpoint):
        return checkpoint.get("best_on_test")


class EpochCallback(Hook):
    """``callback(row)`` after every epoch's checkpoint (``train_or_resume``'s on_epoch):
    a sweep reports validation accuracy to its pruner there, reproduce checks its
    deadline; either may stop the run, which then resumes from that checkpoint."""

    def __init__(self, callback: Callable[[dict], None]):
        self.callback = callback

    def on_checkpoint(self, trainer, row):
        self.callback(row)


def own_hooks(plan: SchedulePlan, model: nn.Module, device: torch.device, quiet: bool = False) -> list[Hook]:
    """The trainer's own hooks for ``plan``'s config, in their order (see above): the
    divergence watch, SWA, the moving average where ema.enabled, the best epoch on test
    where eval.select_on is test. ``quiet``: no warnings (torchrun's other processes)."""
    cfg = plan.cfg
    return [DivergenceWatch(device), StochasticWeightAveraging(plan, model, quiet=quiet),
            *([ExponentialMovingAverage(plan, model)] if cfg.ema.enabled else []),
            *([BestOnTest()] if cfg.eval.select_on == "test" else [])]

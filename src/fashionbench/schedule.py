"""The optimizer and the learning-rate and SWA plan of a run: which LR each step gets,
when SWA takes its snapshots, and where the averaging window lies.

Everything is stepped per batch. The schedule (cyclic, one-cycle, constant or
Keras-style inverse-time decay) runs from the first step; SWA (Izmailov et al.,
"Averaging Weights Leads to Wider Optima and Better Generalization", 2018) averages
snapshots from the end of epoch ``swa.start_epoch`` on: at every cycle's end under
the cyclic schedule, where the LR is lowest, else at every epoch's end. With ``swa.lr`` set, the averaging phase
of the paper: after ``swa.start_epoch`` the LR leaves the schedule, glides to
``swa.lr`` over one epoch (torch's SWALR, cosine) and stays there, and snapshots
are taken at every epoch's end. ``SchedulePlan`` works all of this out from the
configuration alone (so ``--dry-run`` shows what a run will do); ``LRSchedule``
binds it to an optimizer, and the trainer asks it after each step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim import Optimizer, lr_scheduler, swa_utils

from .config import Config, ConfigError


def build_optimizer(cfg: Config, model: nn.Module) -> Optimizer:
    """SGD (Nesterov where set) or AdamW (``optim.momentum`` its beta1) over the model's
    parameters; BatchNorm's shifts in a group of their own where ``optim.bn_bias_lr_scale``
    is not 1 (each group's ``lr_scale`` is what the schedule multiplies its LRs by)."""
    o = cfg.optim
    params: list | object = model.parameters()
    if o.bn_bias_lr_scale != 1:
        shifts = [m.bias for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  and m.bias is not None]
        rest = [p for p in model.parameters() if all(p is not shift for shift in shifts)]
        # airbench (Jordan, 2024) trains BatchNorm's biases 64 times faster. Their weight
        # decay is divided by the same factor, so that the shrinking per step, LR times
        # decay, stays what it was.
        params = [{"params": rest, "lr_scale": 1.0},
                  {"params": shifts, "lr": o.lr * o.bn_bias_lr_scale, "lr_scale": o.bn_bias_lr_scale,
                   "weight_decay": o.weight_decay / o.bn_bias_lr_scale}]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                               weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay)


def scaled(lr: float, optimizer: Optimizer) -> list[float]:
    """``lr`` for each of the optimizer's groups, times its ``lr_scale``."""
    return [lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups]


def steps_per_epoch(cfg: Config, train_size: int) -> int:
    """Whole batches in an epoch (the last partial one is dropped)."""
    if cfg.batch_size > train_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set "
                          f"({train_size:,} images)")
    return train_size // cfg.batch_size


class SchedulePlan:
    """The run's LR schedule, SWA snapshots and moving-average updates, in global steps (1-based: step s is the
    s-th batch of the run)."""

    def __init__(self, cfg: Config, steps_per_epoch: int):
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch
        self.total_steps = cfg.epochs * steps_per_epoch
        s = cfg.schedule
        if s.name == "onecycle" and s.pct_start * self.total_steps == 1:
            # torch's OneCycleLR then rises over zero steps, and divides by zero at the first
            raise ConfigError(f"schedule.pct_start {s.pct_start:g} of {self.total_steps} steps is one step of "
                              "rise, which torch's OneCycleLR cannot schedule; change schedule.pct_start")
        # A whole cyclic-LR cycle in batches; whole-epoch cycles end exactly at epoch ends.
        self.cycle_steps = max(2, round(cfg.schedule.cycle_epochs * steps_per_epoch))
        swa = cfg.swa
        at_cycle_ends = cfg.schedule.name == "cyclic" and not swa.lr
        every = self.cycle_steps if at_cycle_ends else steps_per_epoch
        first_allowed = (swa.start_epoch - 1) * steps_per_epoch + 1  # the first step of start_epoch
        first = -(-first_allowed // every) * every                   # the next multiple of ``every``
        # Empty where SWA is off or cannot average at this budget.
        self.snapshot_steps = range(first, self.total_steps + 1, every) if swa.enabled else range(0)
        self.averaging = len(self.snapshot_steps) > 0
        # After this step the averaging phase's LR (swa.lr) takes over from the schedule.
        self.handover_step = swa.start_epoch * steps_per_epoch if self.averaging and swa.lr else None
        # The steps after which the weights' moving average is updated (ema.enabled).
        ema = cfg.ema
        self.ema_steps = (range(math.floor(ema.start * self.total_steps) + 1, self.total_steps + 1, ema.every)
                          if ema.enabled else range(0))

    def snapshot_due(self, step: int) -> bool:
        """Does SWA take a snapshot after global ``step``?"""
        return step in self.snapshot_steps

    def lone_snapshot(self) -> str | None:
        """Where SWA takes a single snapshot, one line saying what its model then is (an
        average of one: the weights of that step with BatchNorm statistics recomputed)."""
        if len(self.snapshot_steps) != 1:
            return None
        epoch = self.snapshot_steps[0] / self.steps_per_epoch
        return (f"SWA takes a single snapshot in {self.cfg.epochs} epoch{'s' * (self.cfg.epochs != 1)} "
                f"(at the end of epoch {epoch:g}): the SWA model is those weights with their BatchNorm "
                "statistics recomputed, not an average")

    def skipped(self) -> str:
        """Why SWA, although enabled, takes no snapshot: one line for the warning."""
        cfg = self.cfg
        every = (f"; snapshots fall at cycle ends, every {cfg.schedule.cycle_epochs:g} epochs"
                 if cfg.schedule.name == "cyclic" and not cfg.swa.lr else "")
        return (f"SWA cannot average in {cfg.epochs} epoch{'s' * (cfg.epochs != 1)}: no snapshot point "
                f"from epoch {cfg.swa.start_epoch} (swa.start {cfg.swa.start:g}) to epoch {cfg.epochs}"
                f"{every}; training without SWA")

    def schedule(self, optimizer: Optimizer) -> LRSchedule:
        return LRSchedule(self, optimizer)

    def learning_rates(self) -> list[float]:
        """The LR of every step of the run, in order (worked out on a throwaway parameter
        with the run's optimizer settings: the same schedulers, stepped as training steps them)."""
        param = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=self.cfg.optim.lr, momentum=self.cfg.optim.momentum)
        schedule = self.schedule(optimizer)
        lrs = []
        for step in range(1, self.total_steps + 1):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradient: nothing moves, but schedulers expect a step first
            schedule.step(step)
        return lrs


def build_scheduler(cfg: Config, optimizer: Optimizer, plan: SchedulePlan) -> lr_scheduler.LRScheduler:
    """torch's scheduler for ``schedule.name``."""
    s = cfg.schedule
    if s.name == "cyclic":
        # Momentum stays fixed so that every SWA snapshot is taken under the same dynamics.
        return lr_scheduler.CyclicLR(optimizer, base_lr=scaled(s.base_lr, optimizer),
                                     max_lr=scaled(cfg.optim.lr, optimizer),
                                     step_size_up=plan.cycle_steps / 2,
                                     mode=s.mode, gamma=s.gamma, cycle_momentum=False)
    if s.name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=scaled(cfg.optim.lr, optimizer), pct_start=s.pct_start,
                                       total_steps=plan.total_steps)
    if s.name == "inverse_time":
        # Keras' legacy ``decay``: lr / (1 + decay * iterations), iterations counted before the step.
        decay = s.decay
        return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + decay * step))
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


class LRSchedule:
    """A plan bound to an optimizer: the schedule's scheduler and, where ``swa.lr`` is
    set, SWALR for the averaging phase. Both are built up front (their state is
    checkpointed together); SWALR leaves the LR alone until its first step, and from
    there it glides from the LR it finds."""

    def __init__(self, plan: SchedulePlan, optimizer: Optimizer):
        self.plan = plan
        self.scheduler = build_scheduler(plan.cfg, optimizer, plan)
        self.swa_scheduler = (swa_utils.SWALR(optimizer, swa_lr=scaled(plan.cfg.swa.lr, optimizer),
                                              anneal_epochs=plan.steps_per_epoch, anneal_strategy="cos")
                              if plan.handover_step is not None else None)

    def step(self, step: int) -> None:
        """Set the LR for the batch after global ``step``."""
        if self.swa_scheduler is not None and step > self.plan.handover_step:
            self.swa_scheduler.step()
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(),
                # torch < 2.10 puts SWALR's anneal function in its state, which a
                # weights-only load refuses; the constructor sets it again anyway.
                "swa_scheduler": {k: v for k, v in self.swa_scheduler.state_dict().items()
                                  if k != "anneal_func"} if self.swa_scheduler else None}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        if self.swa_scheduler is not None:
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])

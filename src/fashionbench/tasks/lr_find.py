"""LR range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017).

The learning rate grows exponentially from ``start`` to ``end`` over training
batches while the loss is recorded; the sweep stops early once the loss
diverges. The suggestion for a cyclic schedule's peak is a tenth of the LR at
the smoothed loss's minimum: at the minimum the loss is already about to blow
up, a tenth of it still descends fast. Only training images are used, and the
model and optimizer are restored afterwards.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler

from ..figures import plt, png
from ..progress import Progress
from ..training import Trainer

SMOOTHING = 0.98
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (Adam's): early values are
    not dragged towards the average's zero start."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** i))
    return out


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged: bool

    @property
    def best(self) -> int:
        return min(range(len(self.smoothed)), key=self.smoothed.__getitem__)

    @property
    def suggestion(self) -> float:
        return self.lrs[self.best] / 10

    RULE = "a tenth of the LR at the smoothed loss's minimum"


def lr_range_test(trainer: Trainer, start: float, end: float, steps: int) -> LRFinderResult:
    """Sweep ``trainer``'s model from ``start`` to ``end``; model, optimizer and
    schedule are as before when it returns."""
    saved = {"model": copy.deepcopy(trainer.model.state_dict()),
             "optimizer": copy.deepcopy(trainer.optimizer.state_dict())}
    for group in trainer.optimizer.param_groups:
        group["lr"] = group["initial_lr"] = start
    sweep = lr_scheduler.ExponentialLR(trainer.optimizer, gamma=(end / start) ** (1 / max(steps - 1, 1)))
    train, bs = trainer.splits["train"], trainer.cfg.batch_size
    lrs, losses, smoothed = [], [], []
    diverged = False
    trainer.model.train()
    progress = Progress(steps, "lr-find")
    try:
        order = torch.randperm(len(train.labels), device=trainer.device, generator=trainer.generator)
        for i in range(steps):
            j = (i * bs) % (len(order) - bs + 1)
            idx = order[j:j + bs]
            lrs.append(trainer.optimizer.param_groups[0]["lr"])
            loss, _ = trainer.train_step(train.images[idx], train.labels[idx])
            sweep.step()
            losses.append(loss.item())
            smoothed = smooth(losses)
            progress.update(1, lr=f"{lrs[-1]:.1e}", loss=f"{smoothed[-1]:.3f}")
            if not math.isfinite(losses[-1]) or (i > 10 and smoothed[-1] > DIVERGED * min(smoothed)):
                diverged = True
                break
    finally:
        progress.close(f"lr-find: {len(losses)} steps, LR {lrs[0]:.1e} to {lrs[-1]:.1e}" if lrs else "")
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
    # Drop a non-finite tail so that the plot and the minimum stay meaningful.
    keep = [k for k, v in enumerate(smoothed) if math.isfinite(v)]
    return LRFinderResult([lrs[k] for k in keep], [losses[k] for k in keep],
                          [smoothed[k] for k in keep], diverged)


def lr_find_figure(result: LRFinderResult, model: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="lightgray", lw=1, label="loss per batch")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed (EMA 0.98, bias-corrected)")
    ax.axvline(result.lrs[result.best], color="gray", ls=":", label=f"minimum {result.lrs[result.best]:.2e}")
    ax.axvline(result.suggestion, color="tab:red", ls="--",
               label=f"suggested max LR {result.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    low = min(min(result.losses), min(result.smoothed))
    ax.set_ylim(low * 0.95, max(result.smoothed[:result.best + 1]) * 1.15)
    ax.set_title(f"LR range test: {model}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png(fig)

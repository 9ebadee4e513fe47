"""``--dry-run``: what a training command would do, worked out from the config alone.

Nothing here reads the dataset or writes a file: the split sizes follow from the
config (``splits.planned_split_sizes``), the steps and SWA snapshots from the same
``SchedulePlan`` the trainer asks, so the plan cannot drift from the run.
"""

from __future__ import annotations

from pathlib import Path

from .config import LEAKY, Config
from .hardware import device_name, resolve_device, resolve_precision
from .models import build_model, count_parameters
from .rundir import FILES
from .schedule import SchedulePlan, steps_per_epoch
from .splits import planned_split_sizes


def epoch_list(steps: range, spe: int) -> str:
    """The epochs that evenly spaced global ``steps`` end: '20, 21, ..., 30' for a long
    run of them, else every one. Read from the range's ends, never listed whole: a
    plan's cost does not grow with the run's length."""
    def epoch(step: int) -> str:
        e = step / spe
        return f"{e:g}" if e == int(e) else f"{e:.2f}"

    if len(steps) > 4:
        return f"{epoch(steps[0])}, {epoch(steps[1])}, ..., {epoch(steps[-1])}"
    return ", ".join(epoch(s) for s in steps)


def swa_plan(cfg: Config, spe: int) -> str:
    if not cfg.swa.enabled:
        return "off"
    plan = SchedulePlan(cfg, spe)
    steps = plan.snapshot_steps
    if not steps:
        return f"none ({plan.skipped()})"
    when = (f"end of epoch {epoch_list(steps, spe)} (1 snapshot)" if len(steps) == 1 else
            f"ends of epochs {epoch_list(steps, spe)} ({len(steps)} snapshots)")
    if cfg.swa.lr:
        when += f"; LR held at {cfg.swa.lr:g} (swa.lr) after epoch {cfg.swa.start_epoch}"
    return when


def training_plan(cfg: Config) -> list[str]:
    """Lines describing one run of ``cfg`` (one network)."""
    sizes = planned_split_sizes(cfg)
    spe = steps_per_epoch(cfg, sizes["train"])
    device = resolve_device(cfg.device)
    s = cfg.schedule
    if s.name == "cyclic":
        schedule = f"cyclic {s.mode}, {s.base_lr:g} to {cfg.optim.lr:g}, {s.cycle_epochs:g}-epoch cycles"
    elif s.name == "inverse_time":
        last = cfg.optim.lr / (1 + s.decay * (cfg.epochs * spe - 1))
        schedule = f"inverse_time, {cfg.optim.lr:g} / (1 + {s.decay:g} x step), {last:.3g} at the last step"
    else:
        schedule = f"{s.name}, peak {cfg.optim.lr:g}"
    lines = [
        f"model:      {cfg.model}, {count_parameters(build_model(cfg.model, cfg.num_classes)):,} parameters",
        f"data:       {sizes['train']:,} training / {sizes['val']:,} validation / {sizes['test']:,} test images",
        f"epochs:     {cfg.epochs} x {spe:,} steps of {cfg.batch_size} ({cfg.epochs * spe:,} steps)",
        f"optimizer:  {cfg.optim.name}, {schedule}"
        + (f"; BatchNorm shifts at {cfg.optim.bn_bias_lr_scale:g}x the LR" if cfg.optim.bn_bias_lr_scale != 1 else ""),
        f"SWA:        {swa_plan(cfg, spe)}",
        f"device:     {device_name(device)}, {resolve_precision(cfg.precision, device)}",
    ]
    if ema_steps := SchedulePlan(cfg, spe).ema_steps:
        lines.append(f"EMA:        the weights' moving average reported, decay {cfg.ema.decay:g} every "
                     f"{cfg.ema.every} steps from step {ema_steps[0]:,} ({len(ema_steps):,} updates)"
                     + ("; lookahead: the weights set to it at each" if cfg.ema.lookahead else ""))
    if cfg.eval.select_on == "test":
        lines.append(f"selection:  {LEAKY.upper()}: the test split after every epoch, the best epoch's model "
                     "reported (the reference protocol; not an honest estimate)")
    return lines


def run_plan(cfg: Config, run_dir: Path, resume: bool = False) -> str:
    """The whole plan of ``fashionbench train``, ending with the folder it would write."""
    lines = training_plan(cfg)
    lines.append(f"run folder: {run_dir} ({'resumed' if resume else 'created'}: {', '.join(FILES)})")
    return "\n".join(lines)

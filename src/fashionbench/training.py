"""Training one run: data held on the device, batch-wise augmentation, the LR plan
stepped per batch, and a checkpoint every epoch that a killed run resumes from to the
same final numbers. What a run does beside training its model (SWA, the divergence
watch, the leaky best-on-test selection, a sweep's pruner) is in hooks (hooks.py),
which the trainer calls at every step, at every epoch's end and at the finish.

``train_or_resume`` is the one way anything trains: a finished run is read back,
an interrupted one resumed, a new one trained. Features that train several runs
(one-vs-all, specialists, reproduce) call it per run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed, runs
from .augment import alternating_flips, augment
from .calibration import temperature_scaling
from .config import Config, ConfigError
from .data import FashionMNIST
from .distributed import ONE_PROCESS, World
from .errors import FashionbenchError
from .hardware import autocast, device_name, resolve_device, resolve_precision, tune_for
from .hooks import Diverged, EpochCallback, FinalModel, Hook, own_hooks
from .inference import evaluate, for_evaluation, loss_fn, place_model, predict, scores
from .initialisation import WHITEN_IMAGES, initialise
from .models import build_model, count_parameters
from .progress import Progress
from .rundir import RunDir, State, Summary, state_of
from .schedule import SchedulePlan, build_optimizer, steps_per_epoch
from .splits import binary_task, epoch_order, normalize, prepare_splits, to_float
from .threads import CpuShare

H = TypeVar("H", bound=Hook)


def without_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


class Trainer:
    """Everything a run needs, built once from the config; ``fit`` runs or resumes it.

    Under torchrun (``world`` of several processes) every process builds the same
    trainer: the same seeded epoch order, each process taking its 1/N share of every
    global batch (``batch_size`` stays the global batch, so schedules, SWA points and
    recipes mean the same at any world size), gradients averaged by
    DistributedDataParallel, BatchNorm synchronized (``sync_bn``). Rank 0 alone
    validates, recomputes SWA's BatchNorm statistics and evaluates, on whole splits,
    as one process does (cheap beside training, and no collective to get wrong), and
    alone writes the run folder.

    Its hooks (hooks.py) are its own (``own_hooks``: the divergence watch, SWA, the
    moving average for ema.enabled, the best epoch on test for eval.select_on test),
    then ``hooks``, the caller's."""

    def __init__(self, cfg: Config, data: FashionMNIST, run_dir: Path, world: World = ONE_PROCESS,
                 hooks: Sequence[Hook] = ()):
        self.cfg, self.data, self.run_dir, self.world = cfg, data, Path(run_dir), world
        if cfg.batch_size % world.size:
            raise ConfigError(f"batch_size {cfg.batch_size} does not split evenly over {world.size} "
                              "processes; batch_size is the global batch: make it a multiple of them")
        self.device = world.device(resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        tune_for(self.device)
        torch.manual_seed(cfg.seed)
        self.splits = prepare_splits(data, cfg, self.device)
        self.steps_per_epoch = steps_per_epoch(cfg, len(self.splits["train"].labels))
        self.plan = SchedulePlan(cfg, self.steps_per_epoch)
        # A resumed run's checkpoint then replaces the weights initialise sets.
        model = initialise(build_model(cfg.model, cfg.num_classes), cfg,
                           lambda: normalize(to_float(self.splits["train"].images[:WHITEN_IMAGES]), False))
        if not cfg.dropout:
            model = without_dropout(model)
        if world.distributed and cfg.sync_bn:
            model = distributed.convert_sync_batchnorm(model)
        self.model = place_model(model, self.device, cfg.channels_last)
        # The module that trains: gradients averaged over the processes, compiled if asked;
        # state dicts always come from the plain module.
        net = (DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
               if world.distributed else self.model)
        self.forward = torch.compile(net) if cfg.compile else net
        self.optimizer = build_optimizer(cfg, self.model)
        self.schedule = self.plan.schedule(self.optimizer)
        # In this order (hooks.py): a divergence stops the run before anything else sees
        # its epoch, and of the final models the last listed is reported.
        self.hooks: list[Hook] = [*own_hooks(self.plan, self.model, self.device, quiet=not world.is_main), *hooks]
        self.epoch_splits = ("val", *(split for hook in self.hooks for split in hook.splits))
        # One generator for data order and augmentation; dropout uses the global one.
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.flips = (alternating_flips(len(self.splits["train"].labels), cfg.seed, self.device)
                      if cfg.augment.flip_alternate else None)
        if world.rank:
            # The model was built alike everywhere (seeded above). From here the global
            # generator draws dropout masks (and shake-shake's branch weights) for this
            # process's share of each batch: a stream of its own, or every share would
            # get the masks the first share gets.
            torch.manual_seed(cfg.seed + 1_000_003 * world.rank)
        self.environment = runs.environment()  # at the start: the code that trains
        # The CPU's cores shared with the machine's other training processes (threads.py).
        self.cpu_share = CpuShare(enabled=self.device.type == "cpu")
        self.history: list[dict] = []
        self.epoch = 0
        self.train_seconds = 0.0     # training steps only
        self.val_seconds = 0.0       # each epoch's validation

    def hook(self, kind: type[H]) -> H | None:
        """The run's hook of class ``kind`` (e.g. ``StochasticWeightAveraging``), if any."""
        return next((hook for hook in self.hooks if isinstance(hook, kind)), None)

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The checkpoint (on every process: collecting the processes' RNG states is collective)."""
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = {"world_size": self.world.size, "rng_ranks": distributed.gather(rng)} if self.world.distributed else {}
        return {"epoch": self.epoch, "model": self.model.state_dict(), **ranks,
                "optimizer": self.optimizer.state_dict(), **self.schedule.state_dict(),
                "rng": rng, "history": self.history, "train_seconds": self.train_seconds,
                "val_seconds": self.val_seconds,
                "hooks": {hook.key: hook.state_dict() for hook in self.hooks if hook.key}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("world_size", 1) != self.world.size:
            raise FashionbenchError(f"{self.run_dir} was trained by {state.get('world_size', 1)} process(es); "
                                    f"resume it with as many (now {self.world.size})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state)
        # A checkpoint written before hooks (up to 13501e8) has no "hooks": their states
        # were its own entries ("swa_model", "loss_start", "best_on_test"), each hook's old_state.
        saved = state.get("hooks")
        for hook in self.hooks:
            if hook.key:
                hook.load_state_dict(saved.get(hook.key) if saved is not None else hook.old_state(state))
        rng = state["rng_ranks"][self.world.rank] if self.world.distributed else state["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["data"])
        if "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history, self.epoch = state["history"], state["epoch"]
        self.train_seconds = state["train_seconds"]
        self.val_seconds = state.get("val_seconds", 0.0)  # older checkpoints counted it in training

    def save_checkpoint(self) -> None:
        state = self.state_dict()
        if self.world.is_main:
            RunDir(self.run_dir).write_checkpoint(state, self.history)

    # -- training ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The LR the next batch uses, whichever scheduler set it."""
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, flips: torch.Tensor | None = None):
        """One optimizer step on a uint8 global batch: augment (``flips``: which to mirror,
        where they alternate), forward, backward, update. Every process augments the whole
        global batch (the same draws as one process makes) and trains on its share of it."""
        x = normalize(augment(to_float(images), self.cfg.augment, self.generator, flips),
                      self.cfg.channels_last)
        if self.world.distributed:
            x, labels = x[self.shard], labels[self.shard]
        with autocast(self.device, self.precision):
            logits = self.forward(x)
        loss = loss_fn(logits, labels, self.cfg.head, self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    @property
    def shard(self) -> slice:
        """This process's share of a global batch."""
        share = self.cfg.batch_size // self.world.size
        return slice(self.world.rank * share, (self.world.rank + 1) * share)

    def train_epoch(self) -> dict:
        """One epoch: its steps, then validation (and the splits the hooks watch); its
        metrics row, which the hooks have seen."""
        cfg, train, world = self.cfg, self.splits["train"], self.world
        bs, steps = cfg.batch_size, self.steps_per_epoch
        local = bs // world.size  # this process's share of each batch
        self.model.train()
        order = epoch_order(train.labels, steps * bs, self.generator,
                            balanced=cfg.data.positive_class is not None)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        with Progress(steps, f"epoch {self.epoch + 1}/{cfg.epochs}", quiet=not world.is_main) as progress:
            start = time.perf_counter()
            for i in range(steps):
                idx = order[i * bs:(i + 1) * bs]
                y = train.labels[idx]
                step = self.epoch * steps + i + 1
                try:
                    flips = None if self.flips is None else self.flips[idx] ^ bool(self.epoch % 2)
                    loss, logits = self.train_step(train.images[idx], y, flips)
                except RuntimeError as e:
                    # An update too large for the weights' float type: torch refuses to convert
                    # it (a learning rate past config.MAX_LR, e.g. from a config built in Python).
                    if "overflow" not in str(e):
                        raise
                    raise self.diverged(f"at epoch {self.epoch + 1}, step {i + 1} of {steps} "
                                        f"(the optimizer's update overflowed)") from None
                self.schedule.step(step)
                for hook in self.hooks:
                    hook.on_step(self, step, loss, logits)
                loss_sum += loss * local
                correct += (logits.argmax(1) == (y[self.shard] if world.distributed else y)).sum()
                if i % 20 == 19 or i == steps - 1:  # reading values syncs a GPU: not every step
                    self.cpu_share.rebalance()
                    for hook in self.hooks:  # theirs read here too (under torchrun, on every process in step)
                        hook.on_sync(self, step)
                    totals = loss_sum, correct
                    if world.distributed:  # the global batch's figures
                        totals = distributed.all_sum(torch.stack([loss_sum, correct]))
                    seen = (i + 1) * bs
                    progress.update(20 if i % 20 == 19 else (i + 1) % 20,
                                    loss=f"{totals[0].item() / seen:.4f}",
                                    acc=f"{totals[1].item() / seen:.4f}",
                                    lr=f"{self.lr:.2e}",
                                    img_s=f"{seen / (time.perf_counter() - start):.0f}")
            row = {"epoch": self.epoch + 1, "lr": self.lr,
                   "train_loss": totals[0].item() / (steps * bs), "train_acc": totals[1].item() / (steps * bs)}
            seconds = time.perf_counter() - start  # after the values above are read: the steps are done
            val_start = time.perf_counter()
            for split in self.epoch_splits:  # val, and test in the leaky reference protocol
                result = distributed.share(self.evaluate(self.model, split) if world.is_main else None)
                row |= {f"{split}_loss": result["loss"], f"{split}_acc": result["acc"]}
            row |= {"seconds": seconds, "val_seconds": time.perf_counter() - val_start,  # evaluation, every split's
                    "images_per_s": steps * bs / seconds}
            for hook in self.hooks:
                hook.on_epoch_end(self, row)
            leaky = f"TEST acc {row['test_acc']:.4f}  " if "test_acc" in row else ""
            progress.close(f"epoch {row['epoch']:3d}/{cfg.epochs}  lr {row['lr']:.2e}  "
                           f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                           f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  {leaky}"
                           f"{row['seconds']:.1f}s +{row['val_seconds']:.1f}s val  "
                           f"{row['images_per_s']:.0f} img/s")
        return row

    def evaluate(self, model: nn.Module, split: str) -> dict:
        """``model`` on one of the run's splits, as the run evaluates (precision, memory
        layout, head, and flip TTA where ``eval.tta``)."""
        cfg = self.cfg
        return evaluate(for_evaluation(model, cfg), self.splits[split], self.precision, cfg.channels_last, cfg.head)

    def logits(self, model: nn.Module, split: str) -> torch.Tensor:
        """``model``'s logits on one of the run's splits, as ``evaluate`` computes them."""
        cfg = self.cfg
        return predict(for_evaluation(model, cfg), self.splits[split].images, self.precision, cfg.channels_last)

    def diverged(self, where: str) -> Diverged:
        """The one line that stops a diverged run: where, what to change, what is kept."""
        kept = (f"the checkpoint of epoch {self.epoch} is kept in {self.run_dir} for inspection"
                if self.epoch else "nothing was kept")
        return Diverged(f"training diverged {where}; lower the learning "
                        f"rate (--lr, now {self.cfg.optim.lr:g}); {kept}; no model written")

    def fit(self) -> Summary:
        """Train from the current epoch to the end, then evaluate and write the results."""
        with self.cpu_share:
            return self._fit()

    def _fit(self) -> Summary:
        epochs, world = self.cfg.epochs, self.world
        created = world.is_main and not self.run_dir.exists()
        if world.is_main:
            runs.make_dir(self.run_dir)
            RunDir(self.run_dir).write_config(self.cfg)
            at = (f"epoch {self.epoch + 1} of {epochs}" if self.epoch < epochs else
                  f"{epochs} of {epochs} epochs already trained; evaluating")
            processes = f" x {world.size} processes ({world.backend(self.device)})" if world.distributed else ""
            print(f"{self.cfg.model}: {count_parameters(self.model):,} parameters on "
                  f"{device_name(self.device)}{processes}, {self.precision}; "
                  f"{len(self.splits['train'].labels):,} training / {len(self.splits['val'].labels):,} "
                  f"validation images; {at}", flush=True)
        for hook in self.hooks:
            hook.on_start(self)
        while self.epoch < self.cfg.epochs:
            try:
                row = self.train_epoch()
            except Diverged:
                if created and self.epoch == 0:
                    discard_new_run(self.run_dir)
                raise
            self.epoch += 1
            self.train_seconds += row["seconds"]
            self.val_seconds += row["val_seconds"]
            self.history.append(row)
            self.save_checkpoint()
            for hook in self.hooks:
                hook.on_checkpoint(self, row)
        if not self.world.distributed:
            return self.finish()
        # Rank 0 finishes alone, with no collective (SyncBatchNorm as plain BatchNorm),
        # as one process would; the others wait for its summary.
        if self.world.is_main:
            with distributed.unsynchronized():
                summary = self.finish()
        return distributed.share(summary if self.world.is_main else None)

    def finish(self) -> Summary:
        cfg, splits = self.cfg, self.splits
        start = time.perf_counter()
        final_splits = ("val", "test") if cfg.eval.test else ("val",)  # eval.test false: a sweep's trial
        # The last weights, then the hooks' models (SWA's average, the best epoch on test):
        # the last listed is reported.
        models = [FinalModel("last", lambda: self.model), *(m for hook in self.hooks for m in hook.final_models(self))]
        # On whole splits this takes as long as several epochs of a small run: it says so.
        with Progress(len(models) * len(final_splits) + sum(bool(m.making) for m in models),
                      f"final evaluation: {', '.join(m.name for m in models)} models on {', '.join(final_splits)}",
                      announce="stage") as progress:
            logits = {}
            for m in models:
                final = progress.step(m.making, m.make) if m.making else m.make()
                logits[m.name] = {split: progress.step(f"{m.name} on {split}", self.logits, final, split)
                                  for split in final_splits}
        results = {name: {split: scores(z, splits[split].labels, cfg.head) for split, z in by_split.items()}
                   for name, by_split in logits.items()}
        weights = models[-1].name
        for split, result in results[weights].items():
            if not math.isfinite(result["loss"]):  # e.g. BatchNorm statistics that overflowed
                raise self.diverged(f"in the final evaluation ({weights} model, {split} loss {result['loss']})")
        RunDir(self.run_dir).write_model(final, cfg.model, weights, cfg.num_classes)
        # The reported model's temperature, fitted on the validation logits just computed.
        # (Fractions of a second: no stage line.)
        calibrated = temperature_scaling(logits[weights], {split: splits[split].labels for split in final_splits},
                                         cfg.head)
        variant = ("one-vs-all head" if cfg.head == "ova" else
                   f"binary: {binary_task(cfg)}" if cfg.data.positive_class is not None else None)
        summary = Summary(
            kind="run", model=cfg.model, weights=weights, variant=variant, selected_on=cfg.eval.select_on,
            val_acc=results[weights]["val"]["acc"],
            test_acc=results[weights]["test"]["acc"] if cfg.eval.test else None,
            results=results, seed=cfg.seed, parameters=count_parameters(self.model),
            epochs=cfg.epochs, train_size=len(splits["train"].labels),
            val_size=len(splits["val"].labels), test_size=len(splits["test"].labels) if cfg.eval.test else 0,
            train_seconds=self.train_seconds, val_seconds=self.val_seconds,
            seconds_per_epoch=self.train_seconds / cfg.epochs,
            device=device_name(self.device), precision=self.precision, data_md5=self.data.md5,
            temperature_scaling=calibrated,
            extra={**{key: value for hook in self.hooks for key, value in hook.summary(self).items()},
                   "total_seconds": self.train_seconds + self.val_seconds + time.perf_counter() - start,
                   "world_size": self.world.size,
                   # Every intra-op thread count this process trained with (threads.py):
                   # one number unless it shared the machine's cores with other runs.
                   "cpu_threads": sorted(self.cpu_share.threads_used) or None,
                   "backend": self.world.backend(self.device) if self.world.distributed else None,
                   "data_dir": str(self.data.root), **self.environment})
        RunDir(self.run_dir).write_summary(summary)
        return summary


def discard_new_run(run_dir: Path) -> None:
    """Remove the folder of a run that diverged before its first checkpoint: it holds its
    config alone, and resuming it would only diverge again; without it the same
    command, with a lower learning rate, can run. A folder holding anything else is kept."""
    RunDir(run_dir).discard_new()


def train_or_resume(cfg: Config, data: FashionMNIST, run_dir: Path, label: str | None = None,
                    world: World = ONE_PROCESS, on_epoch: Callable[[dict], None] | None = None,
                    hooks: Sequence[Hook] = ()) -> Summary:
    """The run of ``cfg`` in ``run_dir``, whatever state the folder is in: finished (its
    summary is read back), interrupted after an epoch (resumed from its checkpoint) or
    new, or killed before its first checkpoint (trained from the start). ``label``, if
    given, heads one line saying which. Under torchrun every process calls it (the run
    folder on a file system they share). ``hooks`` run beside the trainer's own;
    ``on_epoch(row)`` is called after every epoch's checkpoint (an ``EpochCallback``)."""
    run_dir = Path(run_dir)
    state = state_of(run_dir)
    if state is State.COMPLETE:
        if label and world.is_main:
            print(f"{label}: already complete in {run_dir}", flush=True)
        return RunDir(run_dir).summary
    resume = state is State.INTERRUPTED
    if label and world.is_main:
        print(f"{label}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
    trainer = Trainer(cfg, data, run_dir, world, [*hooks, *([EpochCallback(on_epoch)] if on_epoch else [])])
    if resume:
        trainer.load_state_dict(RunDir(run_dir).read_checkpoint())
    return trainer.fit()

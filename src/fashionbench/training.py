"""Training one run: data held on the device, batch-wise augmentation, the LR and
SWA plan stepped per batch, and a checkpoint every epoch that a killed run resumes
from to the same final numbers.

``train_or_resume`` is the one way anything trains: a finished run is read back,
an interrupted one resumed, a new one trained. Features that train several runs
(one-vs-all, specialists, reproduce) call it per run.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import swa_utils

from . import distributed, runs
from .augment import augment
from .config import Config, ConfigError, dump_config
from .data import FashionMNIST
from .distributed import ONE_PROCESS, World
from .errors import FashionbenchError
from .hardware import autocast, device_name, resolve_device, resolve_precision, tune_for
from .inference import evaluate, for_evaluation, loss_fn, place_model
from .models import build_model, count_parameters
from .progress import Progress
from .runs import Summary
from .schedule import SchedulePlan, steps_per_epoch
from .splits import Split, binary_task, epoch_order, normalize, prepare_splits, to_float
from .threads import CpuShare

# A training loss above this multiple of the run's first one has diverged (a healthy
# run's loss falls from its start; a spike of a few times recovers, twenty does not).
DIVERGED = 20.0


class Diverged(FashionbenchError):
    """A non-finite or exploding loss: the run stops, and nothing of it is published."""


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                               nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.momentum, 0.999),
                             weight_decay=o.weight_decay)


def bn_batches(split: Split, batch_size: int, channels_last: bool):
    """Un-augmented training batches in a fixed order, for recomputing BatchNorm statistics."""
    for i in range(0, len(split.labels), batch_size):
        yield normalize(to_float(split.images[i:i + batch_size]), channels_last)


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
    alone writes the run folder."""

    def __init__(self, cfg: Config, data: FashionMNIST, run_dir: Path, world: World = ONE_PROCESS,
                 on_epoch: Callable[[dict], None] | None = None):
        self.cfg, self.data, self.run_dir, self.world = cfg, data, Path(run_dir), world
        # Called with each epoch's metrics row once its checkpoint is written (a sweep
        # reports validation accuracy to its pruner there, and may stop the run).
        self.on_epoch = on_epoch
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
        # A budget too short to average is the user's choice, not a mistake: say so, go on.
        if cfg.swa.enabled and not self.plan.averaging and world.is_main:
            print(f"fashionbench: warning: {self.plan.skipped()}", file=sys.stderr, flush=True)
        model = build_model(cfg.model, cfg.num_classes)
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
        self.swa_model = swa_utils.AveragedModel(self.model) if self.plan.averaging else None
        # One generator for data order and augmentation; dropout uses the global one.
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
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
        self.loss_start: torch.Tensor | None = None  # the run's first training loss
        # eval.select_on test: the epoch with the best test accuracy so far, its accuracy and
        # its weights (on the CPU), as a Keras ModelCheckpoint(monitor test accuracy,
        # save_best_only) keeps them: a later epoch replaces it only by doing strictly better.
        self.best_on_test: dict | None = None

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The checkpoint (on every process: collecting the processes' RNG states is collective)."""
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = {"world_size": self.world.size, "rng_ranks": distributed.gather(rng)} if self.world.distributed else {}
        return {"epoch": self.epoch, "model": self.model.state_dict(), **ranks,
                "optimizer": self.optimizer.state_dict(), **self.schedule.state_dict(),
                "swa_model": self.swa_model.state_dict() if self.swa_model else None,
                "rng": rng, "history": self.history, "train_seconds": self.train_seconds,
                "val_seconds": self.val_seconds, "best_on_test": self.best_on_test,
                "loss_start": None if self.loss_start is None else self.loss_start.item()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("world_size", 1) != self.world.size:
            raise FashionbenchError(f"{self.run_dir} was trained by {state.get('world_size', 1)} process(es); "
                                    f"resume it with as many (now {self.world.size})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state)
        if self.swa_model:
            self.swa_model.load_state_dict(state["swa_model"])
        rng = state["rng_ranks"][self.world.rank] if self.world.distributed else state["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["data"])
        if "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history, self.epoch = state["history"], state["epoch"]
        self.train_seconds = state["train_seconds"]
        self.val_seconds = state.get("val_seconds", 0.0)  # older checkpoints counted it in training
        self.best_on_test = state.get("best_on_test")
        if state.get("loss_start") is not None:  # checkpoints before it had none
            self.loss_start = torch.tensor(state["loss_start"], device=self.device)

    def save_checkpoint(self) -> None:
        state = self.state_dict()
        if self.world.is_main:
            runs.save_torch(self.run_dir / "checkpoint.pt", state)
            runs.write_text(self.run_dir / "metrics.jsonl",
                            "".join(json.dumps(row) + "\n" for row in self.history))

    # -- training ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The LR the next batch uses, whichever scheduler set it."""
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, images: torch.Tensor, labels: torch.Tensor):
        """One optimizer step on a uint8 global batch: augment, forward, backward, update.
        Every process augments the whole global batch (the same draws as one process
        makes) and trains on its share of it."""
        x = normalize(augment(to_float(images), self.cfg.augment, self.generator),
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
        cfg, train, world = self.cfg, self.splits["train"], self.world
        bs, steps = cfg.batch_size, self.steps_per_epoch
        local = bs // world.size  # this process's share of each batch
        self.model.train()
        order = epoch_order(train.labels, steps * bs, self.generator,
                            balanced=cfg.data.positive_class is not None)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        # The first step (and its loss) where the loss diverged, kept on the device so
        # that watching every step costs no synchronization.
        bad_step = torch.zeros((), dtype=torch.long, device=self.device)
        bad_loss = torch.zeros((), device=self.device)
        progress = Progress(steps, f"epoch {self.epoch + 1}/{cfg.epochs}", quiet=not world.is_main)
        start = time.perf_counter()
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            y = train.labels[idx]
            step = self.epoch * steps + i + 1
            try:
                loss, logits = self.train_step(train.images[idx], y)
            except RuntimeError as e:
                # An update too large for the weights' float type: torch refuses to convert
                # it (a learning rate past config.MAX_LR, e.g. from a config built in Python).
                if "overflow" not in str(e):
                    raise
                progress.bar.close()
                raise self.diverged(f"at epoch {self.epoch + 1}, step {i + 1} of {steps} "
                                    f"(the optimizer's update overflowed)") from None
            if self.loss_start is None:
                self.loss_start = loss
            diverged = (bad_step == 0) & ~(loss <= DIVERGED * self.loss_start)  # NaN compares False
            bad_step = torch.where(diverged, step, bad_step)
            bad_loss = torch.where(diverged, loss, bad_loss)
            self.schedule.step(step)
            if self.swa_model is not None and self.plan.snapshot_due(step):
                self.swa_model.update_parameters(self.model)
            loss_sum += loss * local
            correct += (logits.argmax(1) == (y[self.shard] if world.distributed else y)).sum()
            if i % 20 == 19 or i == steps - 1:  # reading values syncs a GPU: not every step
                self.cpu_share.rebalance()
                totals = loss_sum, correct
                if world.distributed:  # the global batch's figures, and every process stops together
                    bad_step = distributed.all_max(bad_step.clone())
                    totals = distributed.all_sum(torch.stack([loss_sum, correct]))
                if bad_step.item():
                    progress.bar.close()
                    raise self.diverged(f"at epoch {self.epoch + 1}, step "
                                        f"{bad_step.item() - self.epoch * steps} of {steps} "
                                        f"(training loss {bad_loss.item():.4g}, "
                                        f"first {self.loss_start.item():.4g})")
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
        val = distributed.share(self.evaluate(self.model, "val") if world.is_main else None)
        if not math.isfinite(val["loss"]):
            raise self.diverged(f"at epoch {self.epoch + 1}'s end (validation loss {val['loss']})")
        row |= {"val_loss": val["loss"], "val_acc": val["acc"]}
        if cfg.eval.select_on == "test":  # the leaky reference protocol: the test split every epoch
            test = distributed.share(self.evaluate(self.model, "test") if world.is_main else None)
            row |= {"test_loss": test["loss"], "test_acc": test["acc"]}
        row |= {"seconds": seconds, "val_seconds": time.perf_counter() - val_start,  # evaluation, both splits'
                "images_per_s": steps * bs / seconds,
                "swa_snapshots": int(self.swa_model.n_averaged) if self.swa_model else 0}
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
            runs.write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
            at = (f"epoch {self.epoch + 1} of {epochs}" if self.epoch < epochs else
                  f"{epochs} of {epochs} epochs already trained; evaluating")
            processes = f" x {world.size} processes ({world.backend(self.device)})" if world.distributed else ""
            print(f"{self.cfg.model}: {count_parameters(self.model):,} parameters on "
                  f"{device_name(self.device)}{processes}, {self.precision}; "
                  f"{len(self.splits['train'].labels):,} training / {len(self.splits['val'].labels):,} "
                  f"validation images; {at}", flush=True)
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
            if "test_acc" in row and (self.best_on_test is None or row["test_acc"] > self.best_on_test["acc"]):
                self.best_on_test = {"epoch": self.epoch, "acc": row["test_acc"],
                                     "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
            self.save_checkpoint()
            if self.on_epoch is not None:
                self.on_epoch(row)
        if not self.world.distributed:
            return self.finish()
        # Rank 0 finishes alone, with no collective (SyncBatchNorm as plain BatchNorm),
        # as one process would; the others wait for its summary.
        if self.world.is_main:
            with distributed.unsynchronized():
                summary = self.finish()
        return distributed.share(summary if self.world.is_main else None)

    def recompute_swa_bn(self) -> float:
        """The averaged weights' BatchNorm statistics, recomputed on the training split
        (averaged weights need statistics of their own: Izmailov et al. 2018); returns
        the seconds it took."""
        start = time.perf_counter()
        with autocast(self.device, self.precision):
            swa_utils.update_bn(bn_batches(self.splits["train"], self.cfg.batch_size, self.cfg.channels_last),
                                self.swa_model, self.device)
        return time.perf_counter() - start

    def finish(self) -> Summary:
        cfg, splits = self.cfg, self.splits
        start = time.perf_counter()
        # Said where the SWA model is made, not up front: a run that fails before never makes one.
        lone_snapshot = self.plan.lone_snapshot() if self.swa_model else None
        if lone_snapshot and self.world.is_main:
            print(f"fashionbench: warning: {lone_snapshot}", file=sys.stderr, flush=True)
        final_splits = ("val", "test") if cfg.eval.test else ("val",)  # eval.test false: a sweep's trial
        models = ["last"] + ["swa"] * bool(self.swa_model) + ["best_on_test"] * (cfg.eval.select_on == "test")
        # On whole splits this takes as long as several epochs of a small run: it says so.
        with Progress(len(models) * len(final_splits) + bool(self.swa_model),
                      f"final evaluation: {', '.join(models)} models on {', '.join(final_splits)}",
                      announce="stage") as progress:
            def evaluate(name: str, model: nn.Module) -> dict:
                return {split: progress.step(f"{name} on {split}", self.evaluate, model, split)
                        for split in final_splits}

            results = {"last": evaluate("last", self.model)}
            final, weights, bn_seconds = self.model, "last", 0.0
            if self.swa_model:
                # part of making the final model (a speedrun times it)
                bn_seconds = progress.step("SWA BatchNorm statistics", self.recompute_swa_bn)
                results["swa"] = evaluate("swa", self.swa_model.module)
                final, weights = self.swa_model.module, "swa"
            extra = {}
            if cfg.eval.select_on == "test":  # the leaky reference protocol: the best epoch on the test set
                final = copy.deepcopy(self.model)
                final.load_state_dict(self.best_on_test["state"])
                results["best_on_test"] = evaluate("best_on_test", final)
                weights = "best_on_test"
                extra = {"best_epoch": self.best_on_test["epoch"]}
        for split, result in results[weights].items():
            if not math.isfinite(result["loss"]):  # e.g. BatchNorm statistics that overflowed
                raise self.diverged(f"in the final evaluation ({weights} model, {split} loss {result['loss']})")
        runs.save_torch(self.run_dir / "model.pt", {"model": cfg.model, "weights": weights,
                                                    "num_classes": cfg.num_classes,
                                                    "state_dict": final.state_dict()})
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
            extra={"swa_snapshots": int(self.swa_model.n_averaged) if self.swa_model else 0,
                   "swa_bn_seconds": bn_seconds,
                   "total_seconds": self.train_seconds + self.val_seconds + time.perf_counter() - start,
                   "world_size": self.world.size,
                   # Every intra-op thread count this process trained with (threads.py):
                   # one number unless it shared the machine's cores with other runs.
                   "cpu_threads": sorted(self.cpu_share.threads_used) or None,
                   "backend": self.world.backend(self.device) if self.world.distributed else None,
                   "data_dir": str(self.data.root), **extra, **self.environment})
        runs.write_summary(self.run_dir, summary)
        return summary


def discard_new_run(run_dir: Path) -> None:
    """Remove the folder of a run that diverged before its first checkpoint: it holds its
    config.yaml alone, and resuming it would only diverge again; without it the same
    command, with a lower learning rate, can run. A folder holding anything else is kept."""
    try:
        if [path.name for path in run_dir.iterdir()] == ["config.yaml"]:
            (run_dir / "config.yaml").unlink()
            run_dir.rmdir()
    except OSError:
        pass  # gone, or not ours to remove: the divergence is what the user must hear of


def train_or_resume(cfg: Config, data: FashionMNIST, run_dir: Path, label: str | None = None,
                    world: World = ONE_PROCESS, on_epoch: Callable[[dict], None] | None = None) -> Summary:
    """The run of ``cfg`` in ``run_dir``, whatever state the folder is in: finished (its
    summary is read back), interrupted after an epoch (resumed from its checkpoint) or
    new, or killed before its first checkpoint (trained from the start). ``label``, if
    given, heads one line saying which. Under torchrun every process calls it (the run
    folder on a file system they share)."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists():
        if label and world.is_main:
            print(f"{label}: already complete in {run_dir}", flush=True)
        return runs.read_summary(run_dir)
    resume = (run_dir / "checkpoint.pt").exists()
    if label and world.is_main:
        print(f"{label}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
    trainer = Trainer(cfg, data, run_dir, world, on_epoch)
    if resume:
        trainer.load_state_dict(runs.load_torch(run_dir / "checkpoint.pt"))
    return trainer.fit()

"""The training engine: data held on the device, batch-wise augmentation, cyclic
learning rates stepped per batch, stochastic weight averaging, and a checkpoint
every epoch that a killed run resumes from to the same final numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler, swa_utils
from tqdm.auto import tqdm

from . import runs
from .augment import augment
from .config import Config, ConfigError, config_from_dict, dump_config, read_yaml, validate
from .data import CLASSES, FashionMNIST, stratified_split, stratified_subset
from .errors import FashionbenchError
from .hardware import autocast, device_name, resolve_device, resolve_precision
from .models import build_model, count_parameters
from .models.one_vs_all import OneVsAllNetwork

# Training-set statistics (published with the dataset), in units of 1/255.
MEAN, STD = 0.2860, 0.3530
EVAL_BATCH = 1000
# A training loss above this multiple of the run's first one has diverged (a healthy
# run's loss falls from its start; a spike of a few times recovers, twenty does not).
DIVERGED = 20.0


class Diverged(FashionbenchError):
    """A non-finite or exploding loss: the run stops, and nothing of it is published."""


@dataclass
class Split:
    """One split as tensors on the training device: uint8 images (N, 1, 28, 28), int64
    labels; and, on the CPU, each image's position in its original IDX file."""
    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


def split_indices(train_labels: torch.Tensor, test_labels: torch.Tensor,
                  cfg: Config) -> dict[str, torch.Tensor]:
    """Indices of the train, val and test images the config selects from the original
    files: the seeded stratified split, subsets, and a specialist's pair of classes."""
    train_idx, val_idx = stratified_split(train_labels, cfg.data.val_size, cfg.data.split_seed,
                                          cfg.data.train_subset)
    test_idx = (torch.arange(len(test_labels)) if cfg.data.test_subset is None else
                stratified_subset(test_labels, cfg.data.test_subset, cfg.data.split_seed,
                                  "data.test_subset"))
    indices = {"train": (train_labels, train_idx), "val": (train_labels, val_idx),
               "test": (test_labels, test_idx)}
    if cfg.data.negative_class is not None:  # a pair's specialist sees only the pair's images
        pair = torch.tensor([cfg.data.positive_class, cfg.data.negative_class])
        return {name: index[torch.isin(labels[index], pair)] for name, (labels, index) in indices.items()}
    return {name: index for name, (_, index) in indices.items()}


def planned_split_sizes(cfg: Config) -> dict[str, int]:
    """The split sizes a run of ``cfg`` will have, without reading the dataset: the
    stratified split's per-class counts depend only on the class counts, and
    Fashion-MNIST has exactly 6,000 training and 1,000 test images of every class."""
    classes = torch.arange(len(CLASSES))
    indices = split_indices(classes.repeat_interleave(6000), classes.repeat_interleave(1000), cfg)
    return {name: len(index) for name, index in indices.items()}


def steps_per_epoch(cfg: Config, train_size: int) -> int:
    """Whole batches in an epoch (the last partial one is dropped)."""
    if cfg.batch_size > train_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set "
                          f"({train_size:,} images)")
    return train_size // cfg.batch_size


def prepare_splits(data: FashionMNIST, cfg: Config, device: torch.device) -> dict[str, Split]:
    positive = cfg.data.positive_class

    def split(images, labels, index):
        labels = labels[index]
        if positive is not None:
            labels = (labels == positive).long()
        return Split(images[index].to(device), labels.to(device), index)

    indices = split_indices(data.train_labels, data.test_labels, cfg)
    return {"train": split(data.train_images, data.train_labels, indices["train"]),
            "val": split(data.train_images, data.train_labels, indices["val"]),
            "test": split(data.test_images, data.test_labels, indices["test"])}


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = (images - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().div_(255)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, precision: str, channels_last: bool) -> torch.Tensor:
    """Logits (float32, on the CPU) for uint8 images (N, 1, 28, 28) on the model's device,
    in eval mode: a whole split, or any images prepared as the dataset's are."""
    model.eval()
    out = []
    with autocast(images.device, precision):
        for i in range(0, len(images), EVAL_BATCH):
            x = normalize(to_float(images[i:i + EVAL_BATCH]), channels_last)
            out.append(model(x).float().cpu())
    return torch.cat(out)


def binary_task(cfg: Config) -> str:
    d = cfg.data
    other = "the rest" if d.negative_class is None else CLASSES[d.negative_class]
    return f"{CLASSES[d.positive_class]} against {other}"


def class_names(cfg: Config) -> list[str]:
    """The name of each model output; a binary run's output 1 is its positive class."""
    d = cfg.data
    if d.positive_class is None:
        return list(CLASSES)
    positive = CLASSES[d.positive_class]
    return [f"not {positive}" if d.negative_class is None else CLASSES[d.negative_class], positive]


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, head: str, smoothing: float = 0.0):
    """Softmax cross-entropy, or for the one-vs-all head a binary cross-entropy per class
    (summed over classes, so that its scale matches cross-entropy's)."""
    logits = logits.float()
    if head == "softmax":
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    targets = F.one_hot(labels, logits.shape[1]).float() * (1 - smoothing) + smoothing / 2
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1).mean()


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Class probabilities: softmax, or the one-vs-all head's sigmoids normalized to sum to 1."""
    if head == "softmax":
        return logits.softmax(1)
    p = logits.sigmoid()
    return p / p.sum(1, keepdim=True)


def evaluate(model: nn.Module, split: Split, precision: str, channels_last: bool,
             head: str = "softmax") -> dict:
    logits = predict(model, split.images, precision, channels_last)
    labels = split.labels.cpu()
    return {"loss": loss_fn(logits, labels, head).item(),
            "acc": (logits.argmax(1) == labels).float().mean().item()}


def epoch_order(labels: torch.Tensor, size: int, generator: torch.Generator,
                balanced: bool) -> torch.Tensor:
    """Indices of one epoch: a permutation, or for a binary task half positives and half
    negatives, shuffled; a side drawn without replacement where it has enough images,
    else with (one-vs-all positives are the rarer tenth)."""
    device = labels.device
    if not balanced:
        return torch.randperm(len(labels), device=device, generator=generator)

    def draw(pool: torch.Tensor, k: int) -> torch.Tensor:
        if len(pool) >= k:
            return pool[torch.randperm(len(pool), device=device, generator=generator)[:k]]
        return pool[torch.randint(len(pool), (k,), device=device, generator=generator)]

    picks = torch.cat([draw(torch.nonzero(labels == 1).flatten(), size // 2),
                       draw(torch.nonzero(labels == 0).flatten(), size - size // 2)])
    return picks[torch.randperm(len(picks), device=device, generator=generator)]


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                               nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.momentum, 0.999),
                             weight_decay=o.weight_decay)


def cycle_steps(cfg: Config, steps_per_epoch: int) -> int:
    """Batches in one whole cyclic-LR cycle; whole-epoch cycles end exactly at epoch ends."""
    return max(2, round(cfg.schedule.cycle_epochs * steps_per_epoch))


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    s = cfg.schedule
    if s.name == "cyclic":
        # Momentum stays fixed so that every SWA snapshot is taken under the same dynamics.
        return lr_scheduler.CyclicLR(optimizer, base_lr=s.base_lr, max_lr=cfg.optim.lr,
                                     step_size_up=cycle_steps(cfg, steps_per_epoch) / 2,
                                     mode=s.mode, gamma=s.gamma, cycle_momentum=False)
    if s.name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, pct_start=s.pct_start,
                                       total_steps=cfg.epochs * steps_per_epoch)
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def build_swa_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The averaging phase's LR (``swa.lr``), or None to keep the schedule running.
    Built with the schedule but stepped only after ``swa.start_epoch``; until its first
    step it leaves the LR alone, and from there it glides from the LR it finds."""
    if not (cfg.swa.enabled and cfg.swa.lr):
        return None
    return swa_utils.SWALR(optimizer, swa_lr=cfg.swa.lr, anneal_epochs=steps_per_epoch,
                           anneal_strategy="cos")


def swa_due(cfg: Config, step: int, steps_per_epoch: int) -> bool:
    """Average after global ``step`` (1-based)? At cycle ends under cyclic LR (the
    low-LR points of Izmailov et al. 2018); at every epoch's end otherwise, or when
    ``swa.lr`` holds the LR constant."""
    if not cfg.swa.enabled or step < (cfg.swa.start_epoch - 1) * steps_per_epoch + 1:
        return False
    cyclic = cfg.schedule.name == "cyclic" and not cfg.swa.lr
    return step % (cycle_steps(cfg, steps_per_epoch) if cyclic else steps_per_epoch) == 0


def swa_steps(cfg: Config, steps_per_epoch: int) -> list[int]:
    """Every global step after which SWA takes a snapshot; none where SWA is off or
    cannot average at this budget (no snapshot point from swa.start_epoch to the end)."""
    return [s for s in range(1, cfg.epochs * steps_per_epoch + 1) if swa_due(cfg, s, steps_per_epoch)]


def swa_skipped(cfg: Config) -> str:
    """Why SWA, although enabled, takes no snapshot: one line for the warning."""
    every = (f"; snapshots fall at cycle ends, every {cfg.schedule.cycle_epochs:g} epochs"
             if cfg.schedule.name == "cyclic" and not cfg.swa.lr else "")
    return (f"SWA cannot average in {cfg.epochs} epoch{'s' * (cfg.epochs != 1)}: no snapshot point "
            f"from epoch {cfg.swa.start_epoch} (swa.start {cfg.swa.start:g}) to epoch {cfg.epochs}"
            f"{every}; training without SWA")


def bn_batches(split: Split, batch_size: int, channels_last: bool):
    """Un-augmented training batches in a fixed order, for recomputing BatchNorm statistics."""
    for i in range(0, len(split.labels), batch_size):
        yield normalize(to_float(split.images[i:i + batch_size]), channels_last)


class Progress:
    """A live bar on a terminal; one plain line per epoch either way."""

    def __init__(self, total: int, desc: str):
        self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                        disable=not sys.stderr.isatty())

    def update(self, n: int, **stats) -> None:
        self.bar.update(n)
        if stats:
            self.bar.set_postfix(stats, refresh=False)

    def close(self, line: str) -> None:
        self.bar.close()
        print(line, flush=True)


class Trainer:
    """Everything a run needs, built once from the config; ``fit`` runs or resumes it."""

    def __init__(self, cfg: Config, data: FashionMNIST, run_dir: Path):
        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        torch.manual_seed(cfg.seed)
        self.splits = prepare_splits(data, cfg, self.device)
        self.steps_per_epoch = steps_per_epoch(cfg, len(self.splits["train"].labels))
        # A budget too short to average is the user's choice, not a mistake: say so, go on.
        self.averaging = bool(swa_steps(cfg, self.steps_per_epoch))
        if cfg.swa.enabled and not self.averaging:
            print(f"fashionbench: warning: {swa_skipped(cfg)}", file=sys.stderr, flush=True)
        self.model = place_model(build_model(cfg.model, cfg.num_classes), self.device, cfg.channels_last)
        # Compiled forward for training; state dicts always come from the plain module.
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.swa_scheduler = (build_swa_scheduler(cfg, self.optimizer, self.steps_per_epoch)
                              if self.averaging else None)
        self.swa_model = swa_utils.AveragedModel(self.model) if self.averaging else None
        # One generator for data order and augmentation; dropout uses the global one.
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.environment = runs.environment()  # at the start: the code that trains
        self.history: list[dict] = []
        self.epoch = 0
        self.train_seconds = 0.0
        self.loss_start: torch.Tensor | None = None  # the run's first training loss

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                # torch < 2.10 puts SWALR's anneal function in its state, which a
                # weights-only load refuses; the constructor sets it again anyway.
                "swa_scheduler": {k: v for k, v in self.swa_scheduler.state_dict().items()
                                  if k != "anneal_func"} if self.swa_scheduler else None,
                "swa_model": self.swa_model.state_dict() if self.swa_model else None,
                "rng": rng, "history": self.history, "train_seconds": self.train_seconds,
                "loss_start": None if self.loss_start is None else self.loss_start.item()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.swa_scheduler:
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])
        if self.swa_model:
            self.swa_model.load_state_dict(state["swa_model"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["data"])
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.history, self.epoch = state["history"], state["epoch"]
        self.train_seconds = state["train_seconds"]
        if state.get("loss_start") is not None:  # checkpoints before it had none
            self.loss_start = torch.tensor(state["loss_start"], device=self.device)

    def save_checkpoint(self) -> None:
        runs.save_torch(self.run_dir / "checkpoint.pt", self.state_dict())
        runs.write_text(self.run_dir / "metrics.jsonl",
                        "".join(json.dumps(row) + "\n" for row in self.history))

    # -- training ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The LR the next batch uses, whichever scheduler set it."""
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, images: torch.Tensor, labels: torch.Tensor):
        """One optimizer step on a uint8 batch: augment, forward, backward, update."""
        x = normalize(augment(to_float(images), self.cfg.augment, self.generator),
                      self.cfg.channels_last)
        with autocast(self.device, self.precision):
            logits = self.forward(x)
        loss = loss_fn(logits, labels, self.cfg.head, self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def step_lr(self, step: int) -> None:
        """Set the LR for the batch after global ``step`` (1-based): the schedule's up to
        the end of swa.start_epoch, then the averaging phase's where swa.lr is set."""
        averaging = self.swa_scheduler and step > self.cfg.swa.start_epoch * self.steps_per_epoch
        (self.swa_scheduler if averaging else self.scheduler).step()

    def train_epoch(self) -> dict:
        cfg, train = self.cfg, self.splits["train"]
        bs, steps = cfg.batch_size, self.steps_per_epoch
        self.model.train()
        order = epoch_order(train.labels, steps * bs, self.generator,
                            balanced=cfg.data.positive_class is not None)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        # The first step (and its loss) where the loss diverged, kept on the device so
        # that watching every step costs no synchronization.
        bad_step = torch.zeros((), dtype=torch.long, device=self.device)
        bad_loss = torch.zeros((), device=self.device)
        progress = Progress(steps, f"epoch {self.epoch + 1}/{cfg.epochs}")
        start = time.perf_counter()
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            y = train.labels[idx]
            step = self.epoch * steps + i + 1
            loss, logits = self.train_step(train.images[idx], y)
            if self.loss_start is None:
                self.loss_start = loss
            diverged = (bad_step == 0) & ~(loss <= DIVERGED * self.loss_start)  # NaN compares False
            bad_step = torch.where(diverged, step, bad_step)
            bad_loss = torch.where(diverged, loss, bad_loss)
            self.step_lr(step)
            if self.swa_model is not None and swa_due(cfg, step, steps):
                self.swa_model.update_parameters(self.model)
            loss_sum += loss * bs
            correct += (logits.argmax(1) == y).sum()
            if i % 20 == 19 or i == steps - 1:  # reading values syncs a GPU: not every step
                if bad_step.item():
                    progress.bar.close()
                    raise self.diverged(f"at epoch {self.epoch + 1}, step "
                                        f"{bad_step.item() - self.epoch * steps} of {steps} "
                                        f"(training loss {bad_loss.item():.4g}, "
                                        f"first {self.loss_start.item():.4g})")
                seen = (i + 1) * bs
                progress.update(20 if i % 20 == 19 else (i + 1) % 20,
                                loss=f"{loss_sum.item() / seen:.4f}",
                                acc=f"{correct.item() / seen:.4f}",
                                lr=f"{self.lr:.2e}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        row = {"epoch": self.epoch + 1, "lr": self.lr,
               "train_loss": loss_sum.item() / (steps * bs), "train_acc": correct.item() / (steps * bs)}
        val = evaluate(self.model, self.splits["val"], self.precision, cfg.channels_last, cfg.head)
        if not math.isfinite(val["loss"]):
            raise self.diverged(f"at epoch {self.epoch + 1}'s end (validation loss {val['loss']})")
        row |= {"val_loss": val["loss"], "val_acc": val["acc"],
                "seconds": time.perf_counter() - start, "images_per_s": steps * bs / seconds,
                "swa_snapshots": int(self.swa_model.n_averaged) if self.swa_model else 0}
        progress.close(f"epoch {row['epoch']:3d}/{cfg.epochs}  lr {row['lr']:.2e}  "
                       f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                       f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
                       f"{row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s")
        return row

    def diverged(self, where: str) -> Diverged:
        """The one line that stops a diverged run: where, what to change, what is kept."""
        kept = (f"the checkpoint of epoch {self.epoch} is kept in {self.run_dir} for inspection"
                if self.epoch else "nothing was kept")
        return Diverged(f"training diverged {where}; lower the learning "
                        f"rate (--lr, now {self.cfg.optim.lr:g}); {kept}; no model written")

    def fit(self) -> dict:
        """Train from the current epoch to the end, then evaluate and write the results."""
        runs.make_dir(self.run_dir)
        runs.write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
        epochs = self.cfg.epochs
        at = (f"epoch {self.epoch + 1} of {epochs}" if self.epoch < epochs else
              f"{epochs} of {epochs} epochs already trained; evaluating")
        print(f"{self.cfg.model}: {count_parameters(self.model):,} parameters on "
              f"{device_name(self.device)}, {self.precision}; "
              f"{len(self.splits['train'].labels):,} training / {len(self.splits['val'].labels):,} "
              f"validation images; {at}", flush=True)
        while self.epoch < self.cfg.epochs:
            start = time.perf_counter()
            row = self.train_epoch()
            self.epoch += 1
            self.train_seconds += time.perf_counter() - start
            self.history.append(row)
            self.save_checkpoint()
        return self.finish()

    def finish(self) -> dict:
        cfg, splits = self.cfg, self.splits
        start = time.perf_counter()
        results = {"last": {split: evaluate(self.model, splits[split], self.precision,
                                            cfg.channels_last, cfg.head) for split in ("val", "test")}}
        final, weights = self.model, "last"
        if self.swa_model:
            # Averaged weights need BatchNorm statistics of their own (Izmailov et al. 2018).
            with autocast(self.device, self.precision):
                swa_utils.update_bn(bn_batches(splits["train"], cfg.batch_size, cfg.channels_last),
                                    self.swa_model, self.device)
            results["swa"] = {split: evaluate(self.swa_model.module, splits[split], self.precision,
                                              cfg.channels_last, cfg.head) for split in ("val", "test")}
            final, weights = self.swa_model.module, "swa"
        for split, result in results[weights].items():
            if not math.isfinite(result["loss"]):  # e.g. BatchNorm statistics that overflowed
                raise self.diverged(f"in the final evaluation ({weights} model, {split} loss {result['loss']})")
        runs.save_torch(self.run_dir / "model.pt", {"model": cfg.model, "weights": weights,
                                                    "num_classes": cfg.num_classes,
                                                    "state_dict": final.state_dict()})
        summary = {
            "model": cfg.model, "weights": weights,
            **({"variant": "one-vs-all head"} if cfg.head == "ova" else {}),
            **({"variant": f"binary: {binary_task(cfg)}"} if cfg.data.positive_class is not None else {}),
            "val_acc": results[weights]["val"]["acc"], "test_acc": results[weights]["test"]["acc"],
            "results": results,
            "swa_snapshots": int(self.swa_model.n_averaged) if self.swa_model else 0,
            "parameters": count_parameters(self.model),
            "epochs": cfg.epochs, "train_size": len(splits["train"].labels),
            "val_size": len(splits["val"].labels), "test_size": len(splits["test"].labels),
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.train_seconds / cfg.epochs,
            "total_seconds": self.train_seconds + time.perf_counter() - start,
            "seed": cfg.seed, "device": device_name(self.device), "precision": self.precision,
            "data_dir": str(self.data.root), "data_md5": self.data.md5,
            **self.environment,
        }
        runs.write_json(self.run_dir / "summary.json", summary)
        return summary


def train(cfg: Config, data: FashionMNIST, run_dir: Path, resume: bool = False) -> dict:
    if cfg.one_vs_all:  # ten member runs, each resumed on its own
        from .one_vs_all import train_one_vs_all
        return train_one_vs_all(cfg, data, run_dir)
    trainer = Trainer(cfg, data, run_dir)
    if resume:
        trainer.load_state_dict(runs.load_torch(Path(run_dir) / "checkpoint.pt"))
    return trainer.fit()


def run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FashionbenchError(f"{run_dir}: not a run folder (no config.yaml)")
    try:
        return config_from_dict(read_yaml(path))
    except ConfigError as e:  # a damaged file, not a mistake on the command line
        raise FashionbenchError(f"{path}: {e}") from None


@dataclass
class FinishedRun:
    """A finished run's final model, ready to predict on its own splits."""
    cfg: Config
    model: nn.Module
    weights: str                 # "swa" or "last"
    splits: dict[str, Split]
    precision: str

    def predict(self, split: str, flip: bool = False) -> torch.Tensor:
        """Logits on one split; ``flip`` mirrors every image first (test-time augmentation)."""
        images = self.splits[split].images
        return predict(self.model, images.flip(-1) if flip else images, self.precision,
                       self.cfg.channels_last)

    def probs(self, split: str, flip: bool = False) -> torch.Tensor:
        return probabilities(self.predict(split, flip), self.cfg.head)


@dataclass
class LoadedModel:
    """A finished run's final model on a device, in eval mode, without any data."""
    cfg: Config
    model: nn.Module
    weights: str                 # "swa" or "last"
    device: torch.device
    precision: str


def load_model(run_dir: Path, device: str | None = None) -> LoadedModel:
    """``run_dir``'s model.pt on ``device`` (default: the run's own)."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if device:
        cfg = validate(dataclasses.replace(cfg, device=device))
    if not (run_dir / "model.pt").exists():
        raise FashionbenchError(f"{run_dir}: no model.pt (run not finished?)")
    saved = runs.load_torch(run_dir / "model.pt")
    if saved.get("kind") == "one-vs-all":
        model = OneVsAllNetwork([build_model(saved["model"], 2) for _ in range(saved["num_classes"])])
    else:
        model = build_model(saved["model"], saved.get("num_classes", 10))
    model.load_state_dict(saved["state_dict"])
    torch_device = resolve_device(cfg.device)
    model = place_model(model, torch_device, cfg.channels_last).eval()
    return LoadedModel(cfg, model, saved["weights"], torch_device,
                       resolve_precision(cfg.precision, torch_device))


def load_run(run_dir: Path, data: FashionMNIST, device: str | None = None) -> FinishedRun:
    """``run_dir``'s model.pt on ``device`` (default: the run's own), with the run's
    splits rebuilt from its config (the same seeded split as in training)."""
    loaded = load_model(run_dir, device)
    return FinishedRun(loaded.cfg, loaded.model, loaded.weights,
                       prepare_splits(data, loaded.cfg, loaded.device), loaded.precision)


def evaluate_run(run_dir: Path, data: FashionMNIST, split: str, device: str | None = None) -> dict:
    run = load_run(run_dir, data, device)
    result = evaluate(run.model, run.splits[split], run.precision, run.cfg.channels_last, run.cfg.head)
    return {"run": str(run_dir), "weights": run.weights, "split": split, **result}

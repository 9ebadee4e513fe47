"""Every key of a run's configuration: its type, its default, its choices and its range.

config.py reads, merges and validates configurations of these types; this module holds
only what a key is, so that what a run can be set to reads in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OptimConfig:
    name: str = "sgd"            # sgd (Nesterov momentum) | adamw
    lr: float = 0.1              # peak learning rate
    momentum: float = 0.9        # SGD momentum; AdamW beta1
    nesterov: bool = True
    weight_decay: float = 5e-4
    # BatchNorm's shifts (biases) at this many times the LR (their weight decay divided by
    # it): airbench trains them 64 times faster. 1: one group, as every recipe so far.
    bn_bias_lr_scale: float = 1.0


@dataclass
class ScheduleConfig:
    name: str = "cyclic"         # cyclic | onecycle | constant | inverse_time; all stepped per batch
    mode: str = "triangular"     # cyclic: triangular | triangular2 | exp_range
    base_lr: float = 0.005       # cyclic: the low end of each cycle
    cycle_epochs: float = 2.0    # cyclic: one whole cycle (up and down), in epochs
    gamma: float = 1.0           # cyclic exp_range: amplitude decay per step
    pct_start: float = 0.25      # onecycle: share of steps spent rising
    # inverse_time: the LR after t steps is optim.lr / (1 + decay * t), what Keras' legacy
    # optimizers did with their ``decay`` argument (the reference protocol's schedule).
    decay: float = 0.0


@dataclass
class SWAConfig:
    enabled: bool = True
    # When averaging starts, relative to the run as Lightning's swa_epoch_start is: a
    # fraction of the epochs (0 < start < 1), or an epoch number (a whole number >= 1).
    # Snapshots are averaged from the end of that (1-based) epoch on: at each cycle's
    # end with the cyclic schedule (where the LR is lowest), else every epoch. Recipes
    # use the fraction, so that --epochs N scales the averaging window with the run.
    start: float = 0.67
    # Written by fashionbench, never set by hand: the epoch ``start`` resolved to at
    # this run's ``epochs``, so that a run's config says when averaging began.
    start_epoch: int | None = None
    # If set, the averaging phase of Izmailov et al. 2018: after start_epoch the LR
    # leaves the schedule, moves to this value over one epoch (torch's SWALR, cosine)
    # and stays there, and snapshots are averaged at every epoch's end.
    lr: float | None = None


@dataclass
class EMAConfig:
    # An exponential moving average of the weights (BatchNorm statistics averaged alike),
    # reported instead of the last weights: airbench's trick for short runs, where the
    # last steps' weights still wander. Not with SWA (both average weights: choose one).
    enabled: bool = False
    decay: float = 0.99          # the average keeps this share of itself at each update
    every: int = 5               # an update every this many steps (decay**(1/every) a step)
    # The share of the run's steps before averaging starts (0: from the first step); the
    # first update copies the weights, so what came before leaves no trace.
    start: float = 0.5
    # true: after each update the weights themselves are set to the average, so training
    # goes on from the slow weights (the lookahead of hlb-cifar10 and airbench; airbench
    # finds it helps only with fast BatchNorm statistics: see bn_momentum).
    lookahead: bool = False


@dataclass
class InitConfig:
    # Two of airbench's initialisations (initialisation.py): the first convolution set to
    # whiten the training images' patches and frozen; every other convolution started at
    # the identity on its first in_channels filters.
    whiten: bool = False
    whiten_eps: float = 5e-4     # added to each eigenvalue: directions of tiny variance not blown up
    dirac: bool = False


@dataclass
class AugmentConfig:
    flip: float = 0.1            # probability of a horizontal flip
    zoom: float = 0.05           # zoom factor drawn from [1 - zoom, 1 + zoom]
    translate: int = 0           # maximum shift in pixels (pad and crop)
    erase: float = 0.0           # probability of random erasing
    # true: each image mirrored in every other epoch from a random start of its own
    # (airbench's alternating flip), instead of flips drawn with probability ``flip``.
    flip_alternate: bool = False


@dataclass
class EvalConfig:
    # false: the final evaluation sees the validation split only, no test figure anywhere
    # in the run (a sweep's trials: a search must not see the test set).
    test: bool = True
    # Flip test-time augmentation: the model's logits on each image and on its mirror
    # image, averaged; in every evaluation of the run and in the model it serves
    # (predict, export), so a figure and the model that earned it never part.
    tta: bool = False
    # Shift test-time augmentation: the logits on two copies of each image shifted this many
    # pixels (up-left, down-right), averaged, count as much as the image's own (inference.
    # ShiftTTA; with tta, each view also mirrored: airbench's multi-crop TTA). 0: none.
    tta_shift: int = 0
    # Which split picks the reported model. "val": the run's final model (SWA where on),
    # never chosen by a test figure: every recipe but the reference protocol's. "test": the
    # LEAKY mode of recipes/reference/ alone, which reruns the reference project's own
    # protocol: the test split evaluated after every epoch and the best epoch's model
    # reported, as a Keras ModelCheckpoint watching test accuracy does. Every output of
    # such a run says "selected on test"; it measures the protocol, not the network.
    select_on: str = "val"


@dataclass
class DataConfig:
    val_size: int = 5000         # carved from the 60,000 training images, stratified
    split_seed: int = 0          # fixed across run seeds so runs share one validation set
    train_subset: int | None = None  # train on a stratified subset of this size
    test_subset: int | None = None   # evaluate on a stratified test subset (smoke runs only)
    positive_class: int | None = None  # binary task: this class against the rest (one-vs-all) ...
    negative_class: int | None = None  # ... or against this class only, on their images (specialists)


@dataclass
class Config:
    model: str = "basic_cnn"
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0
    label_smoothing: float = 0.0
    # Every BatchNorm layer's momentum (PyTorch's sense: the weight of the newest batch in
    # the running statistics; Keras' momentum is 1 minus it). None: the model's own (0.1 for
    # all but the reference protocol's). airbench uses 0.6 with its lookahead.
    bn_momentum: float | None = None
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    precision: str = "auto"      # auto (bf16 where the hardware has it) | bf16 | fp32
    channels_last: bool = True
    compile: bool = False        # torch.compile the training forward/backward
    head: str = "softmax"        # softmax | ova: ten sigmoid outputs, binary cross-entropy
    dropout: bool = True         # false: every Dropout layer off (exact comparisons, e.g. of world sizes)
    sync_bn: bool = True         # under torchrun: BatchNorm statistics of the global batch, not each shard's
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    init: InitConfig = field(default_factory=InitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def num_classes(self) -> int:
        return 10 if self.data.positive_class is None else 2


# The mark every output of an eval.select_on test run carries (summary, report, tables).
LEAKY = "selected on test"

CHOICES = {
    "optim.name": ("sgd", "adamw"),
    "schedule.name": ("cyclic", "onecycle", "constant", "inverse_time"),
    "schedule.mode": ("triangular", "triangular2", "exp_range"),
    "precision": ("auto", "bf16", "fp32"),
    "head": ("softmax", "ova"),
    "eval.select_on": ("val", "test"),
}
# Upper bounds a user can read, on every number a run is given: far past any run that
# makes sense, and low enough that what is derived from them (steps, snapshot epochs,
# seeds of generators, the optimizer's float32 arithmetic) cannot overflow.
MAX_EPOCHS = 100_000
TRAIN_IMAGES = 60_000      # Fashion-MNIST's training file: no batch or subset is larger
MAX_SEED = 2**32 - 1       # numpy's RandomState (the validation split, Optuna's sampler) takes no more
MAX_LR = 10_000            # a loss diverges within steps far below this; 1e300 overflows the optimizer
# key: (lowest, highest, lowest included); the highest is included. Every number of a
# Config has a range here (tests/test_bounds.py checks), so NaN and infinities, which
# no range holds, are refused wherever a number comes from.
RANGES = {
    "epochs": (1, MAX_EPOCHS, True), "batch_size": (1, TRAIN_IMAGES, True),
    "seed": (0, MAX_SEED, True),
    "label_smoothing": (0, 1, True), "bn_momentum": (0, 1, False),
    "optim.lr": (0, MAX_LR, False), "optim.momentum": (0, 1, True),
    "optim.weight_decay": (0, 1, True), "optim.bn_bias_lr_scale": (0, 1000, False),
    "schedule.base_lr": (0, MAX_LR, False), "schedule.cycle_epochs": (0, MAX_EPOCHS, False),
    # onecycle: torch's OneCycleLR divides by zero at pct_start 1 (no steps left to fall)
    "schedule.gamma": (0, 1, False), "schedule.pct_start": (0, 0.99, False),
    "schedule.decay": (0, 1, True),
    "swa.start": (0, MAX_EPOCHS, False), "swa.lr": (0, MAX_LR, False),
    "init.whiten_eps": (0, 1, False),
    "ema.decay": (0, 0.9999, False), "ema.every": (1, MAX_EPOCHS, True), "ema.start": (0, 0.99, True),
    "augment.flip": (0, 1, True), "augment.zoom": (0, 0.99, True),
    "augment.translate": (0, 13, True), "eval.tta_shift": (0, 13, True), "augment.erase": (0, 1, True),
    "data.val_size": (1, 59_990, True), "data.split_seed": (0, MAX_SEED, True),
    "data.train_subset": (10, TRAIN_IMAGES, True),
    "data.test_subset": (10, 10_000, True), "data.positive_class": (0, 9, True),
    "data.negative_class": (0, 9, True),
}


def span(low: float, high: float, low_included: bool = True) -> str:
    """'[1, 100000]', or '(0, 10000]' where the lowest value is not allowed."""
    return f"{'[' if low_included else '('}{low}, {high}]"


def in_range(value: float, low: float, high: float, low_included: bool = True) -> bool:
    """Is ``value`` within the range? Written so that NaN, which every comparison
    answers False, is not."""
    return (low <= value if low_included else low < value) and value <= high

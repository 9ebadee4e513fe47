"""Using a model: predictions on uint8 images, losses and accuracy, and a finished
run's model loaded on a device (``LoadedModel``: ``load_model`` without data,
``load_run`` with the run's own splits rebuilt), its probabilities divided by the
temperature its summary holds (calibration.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import probabilities as probabilities  # one definition: a model's probabilities
from .config import Config, check_device
from .data import FashionMNIST
from .hardware import autocast, resolve_device, resolve_precision
from .rundir import FinishedRun
from .splits import MEAN, STD, Split, normalize, prepare_splits, to_float

EVAL_BATCH = 1000


class FlipTTA(nn.Module):
    """A model evaluated on each image and on its horizontal mirror, logits averaged:
    garments are (nearly) left-right symmetric, so the two views are two draws of one
    image, and their mean is a cheaper ensemble than a second network."""
    flips = True  # its views include the mirror image (with_flip_tta adds no second mirroring)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(x.flip(-1))) / 2


class ShiftTTA(nn.Module):
    """A model evaluated on each image and on two copies of it shifted by ``shift`` pixels,
    one up and left, one down and right (the border filled with the background, black,
    as augment.translate fills it in training); the shifted views' mean counts as much as
    the image's. airbench's multi-crop TTA (its level 2, with FlipTTA inside: six views)."""

    def __init__(self, model: nn.Module, shift: int):
        super().__init__()
        self.model, self.shift = model, shift
        self.flips = getattr(model, "flips", False)
        self.black = float((0 - MEAN) / STD)  # a black pixel as the model sees it (normalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, (h, w) = self.shift, x.shape[-2:]
        padded = F.pad(x, (s, s, s, s), value=self.black)
        shifted = (self.model(padded[..., :h, :w]) + self.model(padded[..., 2 * s:, 2 * s:])) / 2
        return (self.model(x) + shifted) / 2


def with_flip_tta(model: nn.Module) -> nn.Module:
    """The one flip test-time augmentation, wherever it is asked for (a recipe's eval.tta,
    predict --tta, ensemble --tta): ``model`` in FlipTTA, once (a model a run evaluates
    with eval.tta is wrapped already, and mirroring twice changes nothing)."""
    return model if getattr(model, "flips", False) else FlipTTA(model)


def for_evaluation(model: nn.Module, cfg: Config) -> nn.Module:
    """The model as the run evaluates and serves it (``eval.tta``, ``eval.tta_shift``);
    its weights are the trained model's own, saved without the wrappers."""
    model = with_flip_tta(model) if cfg.eval.tta else model
    return ShiftTTA(model, cfg.eval.tta_shift) if cfg.eval.tta_shift else model


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, precision: str, channels_last: bool,
            batch: int = EVAL_BATCH) -> torch.Tensor:
    """Logits (float32, on the CPU) for uint8 images (N, 1, 28, 28) on the model's device,
    in eval mode, ``batch`` at a time: a whole split, or any images prepared as the dataset's are."""
    model.eval()
    out = []
    with autocast(images.device, precision):
        for i in range(0, len(images), batch):
            x = normalize(to_float(images[i:i + batch]), channels_last)
            out.append(model(x).float().cpu())
    return torch.cat(out)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, head: str, smoothing: float = 0.0):
    """Softmax cross-entropy, or for the one-vs-all head a binary cross-entropy per class
    (summed over classes, so that its scale matches cross-entropy's)."""
    logits = logits.float()
    if head == "softmax":
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    targets = F.one_hot(labels, logits.shape[1]).float() * (1 - smoothing) + smoothing / 2
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1).mean()


def scores(logits: torch.Tensor, labels: torch.Tensor, head: str = "softmax") -> dict:
    """Loss and accuracy of ``logits`` (on the CPU) for ``labels``."""
    labels = labels.cpu()
    return {"loss": loss_fn(logits, labels, head).item(),
            "acc": (logits.argmax(1) == labels).float().mean().item()}


def evaluate(model: nn.Module, split: Split, precision: str, channels_last: bool,
             head: str = "softmax") -> dict:
    return scores(predict(model, split.images, precision, channels_last), split.labels, head)


@dataclass
class LoadedModel:
    """A finished run's final model on a device, in eval mode: what predicting needs.
    Loaded with the data (``load_run``), it also holds the run's own splits, rebuilt
    from its config (the same seeded split as in training)."""
    run: FinishedRun             # the folder, its kind, config and summary
    cfg: Config                  # the run's config, with the device it is loaded on
    model: nn.Module
    weights: str                 # "swa", "ema", "last", "best_on_test" or "ova"
    device: torch.device
    precision: str
    splits: dict[str, Split] = field(default_factory=dict)
    # What its logits are divided by (the summary's temperature scaling; 1: none fitted).
    temperature: float = 1.0

    def logits(self, images: torch.Tensor, tta: bool = False, batch: int = EVAL_BATCH) -> torch.Tensor:
        """Logits (N, classes) on the CPU for uint8 images (N, 1, 28, 28), run as the test
        set is, ``batch`` at a time, not divided by the temperature; ``tta``: with flip
        test-time augmentation (``with_flip_tta``)."""
        model = with_flip_tta(self.model) if tta else self.model
        return predict(model, images.to(self.device), self.precision, self.cfg.channels_last, batch)

    def probabilities(self, images: torch.Tensor, tta: bool = False, temperature: bool = True,
                      batch: int = EVAL_BATCH) -> torch.Tensor:
        """Class probabilities (N, classes) on the CPU for uint8 images (N, 1, 28, 28): of
        the logits divided by the run's temperature, or with ``temperature=False`` as the
        network gives them; ``tta`` and ``batch`` as in ``logits``."""
        return probabilities(self.logits(images, tta, batch), self.cfg.head,
                             self.temperature if temperature else 1.0)

    def evaluate(self, split: str) -> dict:
        """Loss and accuracy on one of its splits, as the run evaluated it (``evaluate``)."""
        return evaluate(self.model, self.splits[split], self.precision, self.cfg.channels_last, self.cfg.head)

    def probs(self, split: str, tta: bool = False, temperature: bool = True) -> torch.Tensor:
        """Class probabilities on one of its splits (loaded with the data: ``load_run``)."""
        return self.probabilities(self.splits[split].images, tta, temperature)


def load_model(run: FinishedRun, device: str | None = None) -> LoadedModel:
    """``run``'s final model on ``device`` (default: the run's own)."""
    cfg = run.cfg if not device else dataclasses.replace(run.cfg, device=check_device(device))
    saved = run.read_model()
    torch_device = resolve_device(cfg.device)
    model = for_evaluation(place_model(saved.network, torch_device, cfg.channels_last), cfg).eval()
    return LoadedModel(run, cfg, model, saved.weights, torch_device, resolve_precision(cfg.precision, torch_device),
                       temperature=run.summary.temperature)


def load_run(run: FinishedRun, data: FashionMNIST, device: str | None = None) -> LoadedModel:
    """``run``'s final model on ``device`` (default: the run's own), with the run's
    splits rebuilt from its config (the same seeded split as in training)."""
    loaded = load_model(run, device)
    loaded.splits = prepare_splits(data, loaded.cfg, loaded.device)
    return loaded

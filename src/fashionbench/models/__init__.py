"""Model registry: every architecture registers a builder under its CLI name.

A builder takes ``num_classes`` and returns an ``nn.Module`` mapping a
(N, 1, 28, 28) batch to (N, num_classes) logits. Its docstring states the size as
"about X.XXM parameters" (the tests hold the builder to that figure); the module
docstring of its file describes the architecture and every change made for 28x28x1.

A registration carries a ``ModelInfo``: the name (the builder's function name),
the builder, the paper it follows, the reference project's test accuracy for it
(None where the reference did not report the model) and a one-sentence summary of
the adaptation to 28x28x1 inputs. ``REGISTRY`` holds them in registration order and
is the source of truth: ``MODELS`` (name -> builder) and ``PAPERS`` (name -> paper)
are kept in step with it for existing callers; ``model_info`` and
``reference_figures`` are what reports and the leaderboard read.

To add a model: one file per family in this package, each builder decorated with
``@register(paper=..., reference=..., adaptation=...)`` (``reference`` only where
the reference project published a figure), and the file imported at the bottom of
this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UsageError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture."""

    name: str
    builder: Builder
    paper: str
    reference: float | None  # the reference project's test accuracy (%), None if unreported
    adaptation: str  # one sentence: how the architecture is fitted to 28x28x1 inputs
    family: str  # the module it comes from, e.g. "resnet"

    def __post_init__(self) -> None:
        # Checked here so that a careless registration fails at import, not in a report.
        if not self.paper.strip() or not self.adaptation.strip():
            raise ValueError(f"model {self.name!r}: paper and adaptation must be given")
        if self.reference is not None and not 0 < self.reference <= 100:
            raise ValueError(f"model {self.name!r}: reference {self.reference} is not a percentage")


# REGISTRY is the source of truth; register() keeps MODELS and PAPERS in step with it
# for the callers that only need a builder or a paper.
REGISTRY: dict[str, ModelInfo] = {}
MODELS: dict[str, Builder] = {}
PAPERS: dict[str, str] = {}


def register(*, paper: str, adaptation: str,
             reference: float | None = None) -> Callable[[Builder], Builder]:
    """Register a builder under its function name with its metadata (see ModelInfo)."""
    def add(builder: Builder) -> Builder:
        name = builder.__name__
        # Two families defining the same function name would otherwise silently
        # replace one another.
        if name in REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        REGISTRY[name] = ModelInfo(name, builder, paper, reference, adaptation,
                                   family=builder.__module__.rpartition(".")[2])
        MODELS[name] = builder
        PAPERS[name] = paper
        return builder
    return add


def check_model(name: str) -> None:
    if name not in REGISTRY:
        raise UsageError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}")


def model_info(name: str) -> ModelInfo:
    check_model(name)
    return REGISTRY[name]


def reference_figures() -> dict[str, float]:
    """The reference project's test accuracy (%) per model that it reported, in its
    table's order: highest first."""
    figures = {name: info.reference for name, info in REGISTRY.items()
               if info.reference is not None}
    return dict(sorted(figures.items(), key=lambda item: -item[1]))


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    return model_info(name).builder(num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module) -> tuple[int, tuple[int, ...]]:
    """FLOPs of one 28x28 image through the model in eval mode (a multiply-add
    counts 2; torch's counter covers convolutions and matrix products), and the
    output shape."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops(), tuple(out.shape)


# Each module registers its builders on import.
from . import (  # noqa: E402,F401
    basic_cnn,
    mini_vgg,
    mobilenet_v2,
    resnet,
    shake_shake,
    shufflenet_v2,
    speedrun,
    wide_resnet,
)

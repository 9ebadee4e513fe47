"""Model registry: every architecture registers a builder under its CLI name.

A builder takes ``num_classes`` and returns an ``nn.Module`` mapping a
(N, 1, 28, 28) batch to (N, num_classes) logits. Its docstring cites the paper,
states every adaptation to 28x28x1 and gives the size as "about X.XXM parameters"
(the tests hold the builder to that figure).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UsageError

MODELS: dict[str, Callable[..., nn.Module]] = {}
PAPERS: dict[str, str] = {}


def register(paper: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under its function name, with the paper it follows."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[builder.__name__] = builder
        PAPERS[builder.__name__] = paper
        return builder
    return add


def check_model(name: str) -> None:
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    check_model(name)
    return MODELS[name](num_classes=num_classes)


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
    wide_resnet,
)

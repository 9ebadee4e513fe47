"""Model registry: every architecture registers a builder under its CLI name.

A builder takes ``num_classes`` and returns an ``nn.Module`` mapping a
(N, 1, 28, 28) batch to (N, num_classes) logits.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import FashionbenchError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    MODELS[builder.__name__] = builder
    return builder


def check_model(name: str) -> None:
    if name not in MODELS:
        raise FashionbenchError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    check_model(name)
    return MODELS[name](num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from . import basic_cnn  # noqa: E402,F401  (registers itself)

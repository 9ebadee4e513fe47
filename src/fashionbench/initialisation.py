"""What a run's config sets in a freshly built model before it trains (``initialise``):
every BatchNorm layer's momentum (``bn_momentum``), and two initialisations of airbench
(Jordan 2024) for short runs, off by default (``init.whiten``, ``init.dirac``).

- Patch whitening (``whiten``): the first convolution's filters become the whitening
  transform of the training images' patches of its size, each eigenvector of the
  patches' second moment scaled by 1 / sqrt(eigenvalue + eps), once as it is and once
  negated (so that a ReLU-like activation keeps both signs), the largest eigenvalues
  first; the filters are then frozen, as airbench keeps them, so the first layer hands
  the network decorrelated inputs of unit scale from the first step on. A 3x3 patch of
  a grayscale image has 9 directions: a first layer of 16 channels (speedrun_net) takes
  the largest 8, one of 24 (speedrun_resnet) all 9 in 18 channels and keeps its 6
  others as PyTorch initialised them, trained. Unlike airbench the layer keeps the
  BatchNorm after it (every registered network has one there).
- Identity (``dirac``): every other convolution's first ``in_channels`` filters pass
  their input through (``torch.nn.init.dirac_``), so each layer starts near the identity
  and the signal reaches the head undistorted; the remaining filters keep PyTorch's
  initialisation. airbench's ablation: 94% on CIFAR-10 in 18 epochs with it, 21 without.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config_schema import Config
from .errors import UsageError

# The images whose patches estimate the second moment: 5,000 of them give 3.4 million
# 3x3 patches, far more than a 9x9 matrix needs, in well under a second.
WHITEN_IMAGES = 5000


def first_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise UsageError("init.whiten needs a model whose first layer is a convolution")
    return conv


def whitening_filters(images: torch.Tensor, kernel_size: tuple[int, int], eps: float) -> torch.Tensor:
    """(d, C, kh, kw) filters, d = C * kh * kw, whose responses to ``images``' patches
    (N, C, H, W, as the model sees them) are uncorrelated with unit second moment
    (up to ``eps``): eigenvectors of the patches' second moment over sqrt(eigenvalue + eps),
    the largest eigenvalue first."""
    size = images.shape[1] * kernel_size[0] * kernel_size[1]
    patches = F.unfold(images.double(), kernel_size).transpose(1, 2).reshape(-1, size)
    moment = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)  # ascending
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.flip(0)
    return filters.reshape(size, images.shape[1], *kernel_size).float()


@torch.no_grad()
def whiten(model: nn.Module, images: torch.Tensor, eps: float) -> nn.Conv2d:
    """Set ``model``'s first convolution to whiten ``images``' patches (see the module's
    docstring) and freeze its weights; returns it."""
    conv = first_conv(model)
    filters = whitening_filters(images[:WHITEN_IMAGES].float().cpu(), conv.kernel_size, eps)
    pairs = min(conv.out_channels // 2, len(filters))
    if pairs == 0 or conv.groups != 1:
        raise UsageError(f"init.whiten needs a first convolution of 2 or more output channels and no groups, "
                         f"got {conv.out_channels} channels in {conv.groups} group(s)")
    chosen = filters[:pairs].to(conv.weight.device, conv.weight.dtype)
    conv.weight[:2 * pairs] = torch.cat([chosen, -chosen])
    conv.weight.requires_grad_(False)
    return conv


@torch.no_grad()
def dirac(model: nn.Module, skip: nn.Module | None = None) -> int:
    """Identity-initialise the first ``in_channels`` filters of every ungrouped
    convolution of ``model`` with at least as many outputs as inputs (but ``skip``);
    returns how many convolutions changed."""
    changed = 0
    for conv in model.modules():
        if (isinstance(conv, nn.Conv2d) and conv is not skip and conv.groups == 1
                and conv.out_channels >= conv.in_channels):
            nn.init.dirac_(conv.weight[:conv.in_channels])
            changed += 1
    return changed


def initialise(model: nn.Module, cfg: Config, training_images: Callable[[], torch.Tensor]) -> nn.Module:
    """``model`` as ``cfg`` sets it up (``training_images``: the first training images as
    the model sees them, asked for by the whitening alone); nothing is drawn from a random
    generator, so a run's other draws are the same with these on or off."""
    if cfg.bn_momentum is not None:
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.momentum = cfg.bn_momentum
    whitened = whiten(model, training_images(), cfg.init.whiten_eps) if cfg.init.whiten else None
    if cfg.init.dirac:
        dirac(model, skip=whitened)
    return model

"""The table of corruptions and their five severities, and ``corrupt``, which applies one
to uint8 images from a seed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError
from .functions import (
    brightness,
    contrast,
    defocus_blur,
    elastic_transform,
    fog,
    gaussian_blur,
    gaussian_noise,
    glass_blur,
    impulse_noise,
    jpeg_compression,
    motion_blur,
    pixelate,
    rotate,
    scale,
    shear,
    shot_noise,
    snow,
    speckle_noise,
    stripe,
    translate,
    zoom_blur,
)

VERSION = 1          # of the corruptions' code and parameters: in every cache file's name and record
LEVELS = (1, 2, 3, 4, 5)
CHUNK = 1000         # images corrupted at a time

Tensor = torch.Tensor


# -- the table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Corruption:
    name: str
    family: str                 # noise, blur, weather, digital, geometric, overlay
    apply: Callable[[Tensor, object, torch.Generator], Tensor]
    follows: str                # whose parameters (see the module's docstring)
    random: bool = True         # draws from the generator (else the seed changes nothing)

    @property
    def severities(self) -> tuple:
        return SEVERITIES[self.name]


IMAGENET_C, CIFAR_C, MNIST_C, SIMARD = "ImageNet-C", "CIFAR-10-C", "MNIST-C", "Simard et al. 2003"

# The five parameters of every corruption, severity 1 first. ImageNet-C's and CIFAR-10-C's
# are their published code's (make_imagenet_c.py, make_cifar_c.py); MNIST-C's its mnist_c.py.
# * Where CIFAR-10-C's five do not change a 28x28 image more at each severity, they are
# ordered: glass blur's first three (sigma 0.05, 0.25, 0.4 with one round) differ by
# less than a grey level, so the rounds grow instead (sigma 0.4 to 0.7, 1 to 5 rounds);
# motion blur's levels 3 and 4 ((6, 2) and (8, 2)) are the same blur (a half-Gaussian of
# sigma 2 is spent within 6 steps), so levels 4 and 5 take sigma 2.5 and 3.
SEVERITIES: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),                         # ImageNet-C: std
    "shot_noise": (60, 25, 12, 5, 3),                                        # ImageNet-C: photons
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),                         # ImageNet-C: share hit
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),                           # ImageNet-C: std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),                              # CIFAR-10-C: sigma
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # CIFAR-10-C: radius, alias
    "glass_blur": ((0.4, 1, 1), (0.4, 1, 2), (0.5, 1, 3), (0.6, 1, 4), (0.7, 1, 5)),  # CIFAR-10-C's, ordered *
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2.5), (9, 3)),             # CIFAR-10-C's, ordered *
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01),         # CIFAR-10-C: np.arange
                  (1, 1.21, 0.01), (1, 1.26, 0.01)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),           # CIFAR-10-C
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),  # CIFAR-10-C
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),                                 # ImageNet-C
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),                                  # ImageNet-C
    "jpeg_compression": (25, 18, 15, 10, 7),                                 # ImageNet-C: quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),                                  # ImageNet-C: share of the side
    "elastic_transform": ((17, 4), (25, 4), (34, 4), (45, 4), (60, 4)),     # Simard et al.: alpha 34, sigma 4
    "rotate": (0.2, 0.4, 0.6, 0.8, 1.0),                                     # MNIST-C: radians
    "shear": (0.2, 0.4, 0.6, 0.8, 1.0),                                      # MNIST-C: radians
    "scale": (1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5),                  # MNIST-C: inverse scale
    "translate": (1, 2, 3, 4, 5),                                            # MNIST-C: pixels
    "stripe": (3, 4, 5, 6, 7),                                               # MNIST-C's is 7 columns
}

CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian_noise", "noise", gaussian_noise, IMAGENET_C),
    Corruption("shot_noise", "noise", shot_noise, IMAGENET_C),
    Corruption("impulse_noise", "noise", impulse_noise, IMAGENET_C),
    Corruption("speckle_noise", "noise", speckle_noise, IMAGENET_C),
    Corruption("gaussian_blur", "blur", gaussian_blur, CIFAR_C, random=False),
    Corruption("defocus_blur", "blur", defocus_blur, CIFAR_C, random=False),
    Corruption("glass_blur", "blur", glass_blur, CIFAR_C),
    Corruption("motion_blur", "blur", motion_blur, CIFAR_C),
    Corruption("zoom_blur", "blur", zoom_blur, CIFAR_C, random=False),
    Corruption("fog", "weather", fog, CIFAR_C),
    Corruption("snow", "weather", snow, CIFAR_C),
    Corruption("brightness", "digital", brightness, IMAGENET_C, random=False),
    Corruption("contrast", "digital", contrast, IMAGENET_C, random=False),
    Corruption("jpeg_compression", "digital", jpeg_compression, IMAGENET_C, random=False),
    Corruption("pixelate", "digital", pixelate, IMAGENET_C, random=False),
    Corruption("elastic_transform", "digital", elastic_transform, SIMARD),
    Corruption("rotate", "geometric", rotate, MNIST_C),
    Corruption("shear", "geometric", shear, MNIST_C),
    Corruption("scale", "geometric", scale, MNIST_C, random=False),
    Corruption("translate", "geometric", translate, MNIST_C),
    Corruption("stripe", "overlay", stripe, MNIST_C, random=False),
)}
NAMES = tuple(CORRUPTIONS)


def check_names(names: Sequence[str] | None) -> list[str]:
    """The corruptions asked for (all of them for None), in the table's order; an unknown
    name is one line naming the known ones."""
    if names is None:
        return list(NAMES)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise UsageError(f"unknown corruption(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    if not names:
        raise UsageError("no corruption named")
    return [n for n in NAMES if n in names]


def check_levels(levels: Sequence[int] | None) -> list[int]:
    """The severities asked for (1 to 5; all for None), in order."""
    if levels is None:
        return list(LEVELS)
    bad = [s for s in levels if isinstance(s, bool) or not isinstance(s, int) or s not in LEVELS]
    if bad or not levels:
        raise UsageError(f"severities are whole numbers from 1 to 5, not {', '.join(map(repr, bad or levels))}"
                         if bad else "no severity named")
    return sorted(set(levels))


def generator(name: str, severity: int, seed: int) -> torch.Generator:
    """The generator of one corruption at one severity: from the seed and the two names,
    so that adding a corruption changes no other's draws."""
    digest = hashlib.sha256(f"{name}/{severity}/{seed}/v{VERSION}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def corrupt(images: Tensor | np.ndarray, name: str, severity: int, seed: int = 0) -> Tensor:
    """``images`` (uint8, (N, H, W) or (N, 1, H, W)) corrupted by ``name`` at ``severity``
    (1 to 5), as uint8 of the same shape. The same seed gives the same bytes; an image's
    result depends on the batch it is in (the draws are the batch's), so the cache
    corrupts a whole set at once."""
    corruption = CORRUPTIONS[check_names([name])[0]]
    check_levels([severity])
    u8 = torch.as_tensor(images)
    if u8.dtype != torch.uint8:
        raise UsageError(f"images must be uint8, not {u8.dtype}")
    shape = u8.shape
    flat = u8.reshape(-1, *shape[-2:]).cpu()
    gen = generator(name, severity, seed)
    out = torch.empty_like(flat)
    for start in range(0, len(flat), CHUNK):  # memory stays flat; the draws go on from chunk to chunk
        x = flat[start:start + CHUNK].double() / 255
        y = corruption.apply(x, corruption.severities[severity - 1], gen)
        out[start:start + CHUNK] = torch.floor(y.clamp(0, 1) * 255 + 1e-6).to(torch.uint8)
    return out.reshape(shape)

"""Batched data augmentation on the training device.

Every transform draws its per-sample randomness as one tensor for the whole batch
from the run's generator, so a batch costs a handful of kernel launches rather
than a Python loop over images, and a seeded run is reproducible. Inputs are
float images in [0, 1] of shape (B, 1, H, W) whose background is 0, so padding
with zeros adds background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig


def _uniform(n: int, low: float, high: float, like: torch.Tensor, gen: torch.Generator):
    return low + (high - low) * torch.rand(n, device=like.device, generator=gen)


def random_flip(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_zoom(x: torch.Tensor, z: float, gen: torch.Generator) -> torch.Tensor:
    """Scale each image about its centre by a factor drawn from U[1 - z, 1 + z]."""
    scale = _uniform(x.shape[0], 1 - z, 1 + z, x, gen)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale  # sampling grid shrinks when the image grows
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels per axis: zero-pad, then crop at a random offset."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=gen)
    rows = dy[:, None, None] + torch.arange(h, device=x.device)[None, :, None]
    cols = dx[:, None, None] + torch.arange(w, device=x.device)[None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around the channel slice put the channel last: (B, H, W, C).
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def random_erase(x: torch.Tensor, p: float, gen: torch.Generator,
                 area: tuple[float, float] = (0.02, 0.25),
                 aspect: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): with probability ``p`` blank a random rectangle."""
    b, _, h, w = x.shape
    apply = torch.rand(b, device=x.device, generator=gen) < p
    target = _uniform(b, *area, x, gen) * h * w
    ratio = torch.exp(_uniform(b, math.log(aspect[0]), math.log(aspect[1]), x, gen))
    eh = torch.sqrt(target * ratio).round().clamp(1, h)
    ew = torch.sqrt(target / ratio).round().clamp(1, w)
    y0 = (torch.rand(b, device=x.device, generator=gen) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, device=x.device, generator=gen) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])
    in_cols = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


def alternating_flips(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """Which of ``n`` training images are mirrored in even epochs (0, 2, ...; odd ones mirror
    the others): airbench's alternating flip (Jordan, 2024), so that over any two epochs
    each image is seen both ways, where independent draws leave a quarter of them one way
    twice. Drawn once from ``seed`` on the CPU (the same on every device), apart from the
    run's generator."""
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator,
            flips: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the enabled transforms; a transform switched off costs nothing and is exact
    identity. ``flips``: which images to mirror (augment.flip_alternate), instead of drawing."""
    if cfg.translate:
        x = random_translate(x, cfg.translate, gen)
    if cfg.zoom:
        x = random_zoom(x, cfg.zoom, gen)
    if flips is not None:
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    elif cfg.flip:
        x = random_flip(x, cfg.flip, gen)
    if cfg.erase:
        x = random_erase(x, cfg.erase, gen)
    return x

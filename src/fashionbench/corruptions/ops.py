"""The array operations the corruptions are made of, batched in torch on float64 (B, H, W)
images: seeded draws, SciPy's Gaussian filter and its edge modes, sampling a grid,
affine maps, ImageNet-C's clipped zoom and motion blur, a round trip through Pillow."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Tensor = torch.Tensor



def uniform(shape, low: float, high: float, gen: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def normal(shape, loc: float, scale: float, gen: torch.Generator) -> Tensor:
    return loc + scale * torch.randn(shape, generator=gen, dtype=torch.float64)


def extended(n: int, r: int, mode: str) -> Tensor:
    """Indices of a side of ``n`` pixels extended by ``r`` on both ends, as scipy.ndimage
    names the modes: "nearest" (edge repeated), "reflect" (half-sample symmetric: d c b a
    | a b c d) or "mirror" (whole-sample, OpenCV's BORDER_REFLECT_101: d c b | a b c d)."""
    i = torch.arange(-r, n + r)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "reflect":
        i = i.remainder(2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    if n == 1:
        return torch.zeros_like(i)
    i = i.remainder(2 * n - 2)
    return torch.where(i >= n, 2 * n - 2 - i, i)


def pad(x: Tensor, r: int, mode: str) -> Tensor:
    rows, cols = extended(x.shape[-2], r, mode), extended(x.shape[-1], r, mode)
    return x[..., rows, :][..., cols]


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """scipy.ndimage.gaussian_filter's 1-D kernel (what skimage.filters.gaussian uses)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * t ** 2 / sigma ** 2)
    return k / k.sum()


def gaussian_filter(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """skimage.filters.gaussian of each image of (B, H, W) (sigma 0: the image itself)."""
    if sigma == 0:
        return x.clone()
    k = gaussian_kernel(sigma, truncate)
    r = (len(k) - 1) // 2
    y = pad(x, r, mode).unsqueeze(1)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return F.conv2d(y, k.view(1, 1, 1, -1)).squeeze(1)


def pixel_grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    return rows, cols


def sample(x: Tensor, rows: Tensor, cols: Tensor, padding: str, align_corners: bool) -> Tensor:
    """Bilinear samples of each image of (B, H, W) at pixel coordinates (B, H, W)
    (``rows``, ``cols``; pixel centres at integers)."""
    h, w = x.shape[-2:]
    if align_corners:
        gx, gy = 2 * cols / (w - 1) - 1, 2 * rows / (h - 1) - 1
    else:
        gx, gy = (2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode=padding,
                         align_corners=align_corners).squeeze(1)


def affine(x: Tensor, a: Tensor) -> Tensor:
    """Each image resampled through its inverse map ``a`` (B, 2, 2), acting on (x, y) =
    (column, row) about the centre (13.5, 13.5 for 28x28), zeros outside: skimage's
    ``warp(x, inverse_map)``, order 1, as MNIST-C calls it."""
    h, w = x.shape[-2:]
    rows, cols = pixel_grid(h, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    u, v = cols - cx, rows - cy
    src_x = a[:, 0, 0, None, None] * u + a[:, 0, 1, None, None] * v + cx
    src_y = a[:, 1, 0, None, None] * u + a[:, 1, 1, None, None] * v + cy
    return sample(x, src_y, src_x, "zeros", align_corners=True)


def signs(b: int, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (b,), generator=gen).double() * 2 - 1


def clipped_zoom(x: Tensor, factor: float, trim: bool = True) -> Tensor:
    """ImageNet-C's ``clipped_zoom``: the centre 1/``factor`` of each image of (B, H, W)
    enlarged back to its size (scipy.ndimage.zoom, order 1: the result may be a pixel or
    two larger) and cropped to the centre; with ``trim`` False, not cropped."""
    h = x.shape[-1]
    ch = int(np.ceil(h / float(factor)))
    top = (h - ch) // 2
    crop = x[..., top:top + ch, top:top + ch]
    out = int(round(ch * factor))
    zoomed = F.interpolate(crop.unsqueeze(1), size=(out, out), mode="bilinear", align_corners=True).squeeze(1)
    if not trim:
        return zoomed
    first = (out - h) // 2
    return zoomed[..., first:first + h, first:first + h]


def motion_kernel_blur(x: Tensor, radius: int, sigma: float, angles: Tensor) -> Tensor:
    """``imagecorruptions``' motion blur (its re-implementation of ImageMagick's): each
    image of (B, H, W) shifted along its angle (degrees, (B,)) one pixel at a time,
    edges repeated, the shifts weighted by a half-Gaussian of ``sigma`` over ``2 * radius
    + 1`` steps; a shift past the image's side ends the sum."""
    b, h, w = x.shape
    width = 2 * radius + 1
    k = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    rad = torch.deg2rad(angles.double())
    py, px = width * torch.sin(rad), width * torch.cos(rad)
    hypot = torch.hypot(py, px)
    rows = torch.arange(h)
    cols = torch.arange(w)
    batch = torch.arange(b)[:, None, None]
    out = torch.zeros_like(x)
    going = torch.ones(b, dtype=torch.bool)
    for i in range(width):
        dy = -torch.ceil(i * py / hypot - 0.5).long()
        dx = -torch.ceil(i * px / hypot - 0.5).long()
        going &= (dy.abs() < h) & (dx.abs() < w)
        r = (rows[None, :] - dy[:, None]).clamp(0, h - 1)
        c = (cols[None, :] - dx[:, None]).clamp(0, w - 1)
        shifted = x[batch, r[:, :, None], c[:, None, :]]
        out += k[i] * shifted * going[:, None, None]
    return out


def quantized(x: Tensor) -> Tensor:
    """To 8-bit levels and back, truncating as ImageNet-C's ``np.uint8`` does."""
    return torch.floor(x.clamp(0, 1) * 255 + 1e-6) / 255


def through_pillow(x: Tensor, work: Callable[[Image.Image], Image.Image]) -> Tensor:
    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).numpy()
    out = np.stack([np.asarray(work(Image.fromarray(image, mode="L"))) for image in pixels])
    return torch.from_numpy(out).double() / 255

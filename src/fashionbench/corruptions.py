"""Common corruptions of 28x28 grayscale images at five severities, for measuring how a
model's accuracy degrades off the clean test set (``fashionbench robustness``).

The corruptions follow ImageNet-C (Hendrycks & Dietterich 2019, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations"; their code, and its
maintained repackaging ``imagecorruptions``), and MNIST-C (Mu & Gilmer 2019), which
Fashion-MNIST-C (Weiss & Tonella 2022) clones for Fashion-MNIST. Their parameters, five
per corruption, are in one table, ``SEVERITIES``, chosen by one rule:

- a corruption whose parameter does not depend on the image's size (noise per pixel,
  brightness, contrast, JPEG quality, pixelation as a fraction of the side) keeps
  ImageNet-C's parameters, as MNIST-C and Fashion-MNIST-C apply them to 28x28 images;
- one measured in pixels (the blurs, fog, snow) takes CIFAR-10-C's, the parameters
  Hendrycks & Dietterich chose for 32x32 images (``make_cifar_c.py``), ordered where two
  of their levels change a 28x28 image equally (glass and motion blur: see ``SEVERITIES``);
- the elastic distortion is Simard et al.'s (2003) for 28x28 digits, without the affine
  part ImageNet-C adds (rotate, shear and scale are corruptions of their own);
- the geometric ones (rotate, shear, scale, translate) and ``stripe`` are MNIST-C's
  (their five levels; MNIST-C publishes one of them, and stripe's width at severity 5).

Every function is batched: a float64 tensor (B, H, W) in [0, 1] in, the same out,
randomness drawn for the whole batch from a ``torch.Generator`` (on the CPU, so a seed
gives the same bytes on any machine with the same libraries). JPEG and pixelation are
defined by Pillow's codec and resamplers, so those two go through Pillow image by image.
``corrupt`` takes uint8 images and returns uint8 ones, truncated (not rounded) to
integers as ImageNet-C's files and ``imagecorruptions`` are. ``CorruptionCache`` keeps
each (corruption, severity, seed) of a set of images in an .npz file.

tests/test_corruptions.py holds these to ``imagecorruptions`` where it has the same
corruption: exactly, or within one grey level, for the deterministic ones given the same
parameters, and by the mean change per image for the random ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import runs
from .errors import UsageError

VERSION = 1          # of the corruptions' code and parameters: in every cache file's name and record
LEVELS = (1, 2, 3, 4, 5)
CACHE_ENV = "FASHIONBENCH_CORRUPTIONS_DIR"
CHUNK = 1000         # images corrupted at a time

Tensor = torch.Tensor


# -- helpers -----------------------------------------------------------------------------

def _uniform(shape, low: float, high: float, gen: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _normal(shape, loc: float, scale: float, gen: torch.Generator) -> Tensor:
    return loc + scale * torch.randn(shape, generator=gen, dtype=torch.float64)


def _extended(n: int, r: int, mode: str) -> Tensor:
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


def _pad(x: Tensor, r: int, mode: str) -> Tensor:
    rows, cols = _extended(x.shape[-2], r, mode), _extended(x.shape[-1], r, mode)
    return x[..., rows, :][..., cols]


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """scipy.ndimage.gaussian_filter's 1-D kernel (what skimage.filters.gaussian uses)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * t ** 2 / sigma ** 2)
    return k / k.sum()


def gaussian_filter(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """skimage.filters.gaussian of each image of (B, H, W) (sigma 0: the image itself)."""
    if sigma == 0:
        return x.clone()
    k = _gaussian_kernel(sigma, truncate)
    r = (len(k) - 1) // 2
    y = _pad(x, r, mode).unsqueeze(1)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return F.conv2d(y, k.view(1, 1, 1, -1)).squeeze(1)


def _pixel_grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    return rows, cols


def _sample(x: Tensor, rows: Tensor, cols: Tensor, padding: str, align_corners: bool) -> Tensor:
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


def _affine(x: Tensor, a: Tensor) -> Tensor:
    """Each image resampled through its inverse map ``a`` (B, 2, 2), acting on (x, y) =
    (column, row) about the centre (13.5, 13.5 for 28x28), zeros outside: skimage's
    ``warp(x, inverse_map)``, order 1, as MNIST-C calls it."""
    h, w = x.shape[-2:]
    rows, cols = _pixel_grid(h, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    u, v = cols - cx, rows - cy
    src_x = a[:, 0, 0, None, None] * u + a[:, 0, 1, None, None] * v + cx
    src_y = a[:, 1, 0, None, None] * u + a[:, 1, 1, None, None] * v + cy
    return _sample(x, src_y, src_x, "zeros", align_corners=True)


def _signs(b: int, gen: torch.Generator) -> Tensor:
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


def _quantized(x: Tensor) -> Tensor:
    """To 8-bit levels and back, truncating as ImageNet-C's ``np.uint8`` does."""
    return torch.floor(x.clamp(0, 1) * 255 + 1e-6) / 255


def _through_pillow(x: Tensor, work: Callable[[Image.Image], Image.Image]) -> Tensor:
    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).numpy()
    out = np.stack([np.asarray(work(Image.fromarray(image, mode="L"))) for image in pixels])
    return torch.from_numpy(out).double() / 255


# -- noise -------------------------------------------------------------------------------

def gaussian_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Additive Gaussian noise of standard deviation ``c``."""
    return (x + _normal(x.shape, 0.0, c, gen)).clamp(0, 1)


def shot_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Poisson (photon) noise: ``c`` photons at full intensity."""
    return (torch.poisson(x * c, generator=gen) / c).clamp(0, 1)


def impulse_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Salt and pepper: a share ``c`` of the pixels set to white or black, half each
    (skimage's ``random_noise(mode="s&p")``)."""
    hit = torch.rand(x.shape, generator=gen, dtype=torch.float64) < c
    salt = torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.5
    return torch.where(hit, salt.double(), x)


def speckle_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Multiplicative Gaussian noise of standard deviation ``c``."""
    return (x + x * _normal(x.shape, 0.0, c, gen)).clamp(0, 1)


# -- blur --------------------------------------------------------------------------------

def gaussian_blur(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Gaussian blur of standard deviation ``c`` pixels (edges repeated)."""
    return gaussian_filter(x, c).clamp(0, 1)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """ImageNet-C's ``disk``: a flat disk of ``radius`` (17x17 up to radius 8), smoothed
    by a 3x3 Gaussian of ``alias_blur`` (OpenCV's, borders mirrored), in float32 as there."""
    side = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(side, side)
    disk = torch.from_numpy(((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32))
    disk /= disk.sum()
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-t ** 2 / (2 * alias_blur ** 2))
    g = g / g.sum()
    r = ksize // 2
    y = _pad(disk.double()[None], r, "mirror").unsqueeze(1)
    y = F.conv2d(F.conv2d(y, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))[0, 0].float().double()
    # A small disk leaves most of the 17x17 kernel zero: its support alone convolves the same.
    used = torch.nonzero(y.abs().sum(0)).flatten()
    keep = int(max(used.max() - (len(y) - 1) // 2, (len(y) - 1) // 2 - used.min()))
    middle = (len(y) - 1) // 2
    return y[middle - keep:middle + keep + 1, middle - keep:middle + keep + 1]


def defocus_blur(x: Tensor, c: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Defocus: convolution with ``disk_kernel(*c)`` (OpenCV's ``filter2D``, borders mirrored)."""
    k = disk_kernel(*c)
    r = (k.shape[-1] - 1) // 2
    return F.conv2d(_pad(x, r, "mirror").unsqueeze(1), k[None, None]).squeeze(1).clamp(0, 1)


def glass_blur(x: Tensor, c: tuple[float, int, int], gen: torch.Generator) -> Tensor:
    """Glass: Gaussian blur of ``c[0]``, then ``c[2]`` rounds in which every inner pixel
    takes the value of a random neighbour up to ``c[1]`` pixels away, then the blur
    again. ImageNet-C swaps pixels one after another in a Python loop; here every pixel
    of a round draws at once (a gather, not a chain of swaps): the same local shuffle
    in distribution, checked against it by the mean change it makes."""
    sigma, delta, rounds = c
    b, h, w = x.shape
    x = _quantized(gaussian_filter(x, sigma))
    inner_r = torch.arange(delta + 1, h - delta + 1)
    inner_c = torch.arange(delta + 1, w - delta + 1)
    batch = torch.arange(b)[:, None, None]
    for _ in range(rounds):
        shape = (b, len(inner_r), len(inner_c))
        dy = torch.randint(-delta, delta, shape, generator=gen)
        dx = torch.randint(-delta, delta, shape, generator=gen)
        moved = x[batch, inner_r[None, :, None] + dy, inner_c[None, None, :] + dx]
        x = x.clone()
        x[:, delta + 1:h - delta + 1, delta + 1:w - delta + 1] = moved
    return gaussian_filter(x, sigma).clamp(0, 1)


def motion_blur(x: Tensor, c: tuple[int, float], gen: torch.Generator) -> Tensor:
    """Motion blur of ``c`` = (radius, sigma) at an angle drawn from U(-45, 45) degrees per image."""
    angles = _uniform(x.shape[0], -45.0, 45.0, gen)
    return motion_kernel_blur(x, c[0], c[1], angles).clamp(0, 1)


def zoom_blur(x: Tensor, c: tuple[float, float, float], gen: torch.Generator) -> Tensor:
    """Zoom blur: the mean of the image and its ``clipped_zoom`` by every factor of
    ``np.arange(*c)``."""
    factors = np.arange(*c)
    out = torch.zeros_like(x)
    for factor in factors:
        out += clipped_zoom(x, factor)
    return ((x + out) / (len(factors) + 1)).clamp(0, 1)


# -- weather -----------------------------------------------------------------------------

def plasma_fractal(b: int, size: int, decay: float, gen: torch.Generator) -> Tensor:
    """ImageNet-C's ``plasma_fractal`` (diamond-square), ``b`` maps of ``size`` x ``size``
    (a power of two) in [0, 1] at once."""
    maps = torch.zeros(b, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled(array: Tensor) -> Tensor:
        return array / 4 + wibble * _uniform(array.shape, -wibble, wibble, gen)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + torch.roll(corners, -1, 1)
        squares = squares + torch.roll(squares, -1, 2)
        maps[:, half:size:step, half:size:step] = wibbled(squares)
        dr = maps[:, half:size:step, half:size:step]
        ul = maps[:, 0:size:step, 0:size:step]
        lt = dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2)
        maps[:, 0:size:step, half:size:step] = wibbled(lt)
        tt = dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1)
        maps[:, half:size:step, 0:size:step] = wibbled(tt)
        step //= 2
        wibble /= decay
    low = maps.amin(dim=(1, 2), keepdim=True)
    maps = maps - low
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def fog(x: Tensor, c: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Fog: a plasma fractal of strength ``c[0]`` and roughness decay ``c[1]`` added, the
    result scaled back to the image's own maximum."""
    b, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    top = x.amax(dim=(1, 2), keepdim=True)
    x = x + c[0] * plasma_fractal(b, size, c[1], gen)[:, :h, :w]
    return (x * top / (top + c[0])).clamp(0, 1)


def snow(x: Tensor, c: tuple, gen: torch.Generator) -> Tensor:
    """Snow: Gaussian flakes (mean ``c[0]``, spread ``c[1]``) enlarged by ``c[2]``, those
    under ``c[3]`` dropped, motion-blurred (radius ``c[4]``, sigma ``c[5]``, falling at
    -135 to -45 degrees), added twice (once turned half round) to the image brightened
    to a share ``1 - c[6]`` (``imagecorruptions``' grayscale case: the layer, a pixel or
    two larger than the image after the zoom, is blurred whole, then cropped)."""
    b, h, w = x.shape
    layer = clipped_zoom(_normal(x.shape, c[0], c[1], gen), c[2], trim=False)
    layer = torch.where(layer < c[3], 0.0, layer).clamp(0, 1)
    angles = _uniform(b, -135.0, -45.0, gen)
    layer = motion_kernel_blur(layer, int(c[4]), c[5], angles)[:, :h, :w]
    layer = torch.round(layer * 255).clamp(0, 255) / 255
    x = c[6] * x + (1 - c[6]) * torch.maximum(x, x * 1.5 + 0.5)
    return (x + layer + torch.rot90(layer, 2, dims=(1, 2))).clamp(0, 1)


# -- digital -----------------------------------------------------------------------------

def brightness(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Brightness raised by ``c`` (for a grayscale image, ImageNet-C's HSV value is the pixel)."""
    return (x + c).clamp(0, 1)


def contrast(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Contrast scaled by ``c`` about each image's mean."""
    mean = x.mean(dim=(1, 2), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def jpeg_compression(x: Tensor, c: int, gen: torch.Generator) -> Tensor:
    """JPEG at quality ``c`` (Pillow's encoder, grayscale)."""
    def work(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=c)
        return Image.open(buffer)
    return _through_pillow(x, work)


def pixelate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Pixelation: shrunk to ``c`` of the side (box filter), enlarged back (nearest)."""
    def work(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.NEAREST)
    return _through_pillow(x, work)


def elastic_transform(x: Tensor, c: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Elastic distortion (Simard et al. 2003, the one MNIST-C's and ImageNet-C's build on):
    every pixel displaced by a field of uniform noise in [-1, 1] smoothed by a Gaussian of
    ``c[1]`` pixels and scaled by ``c[0]``, bilinear, borders reflected. (ImageNet-C's and
    CIFAR-10-C's also move three points of a random affine map first, by amounts that
    shrink as the severity grows, so their severities are not ordered on a 28x28 image:
    the affine maps are rotate, shear and scale's here.)"""
    alpha, sigma = c
    rows, cols = _pixel_grid(*x.shape[-2:])
    dx = gaussian_filter(_uniform(x.shape, -1.0, 1.0, gen), sigma, "reflect", truncate=3) * alpha
    dy = gaussian_filter(_uniform(x.shape, -1.0, 1.0, gen), sigma, "reflect", truncate=3) * alpha
    return _sample(x, rows + dy, cols + dx, "reflection", align_corners=False).clamp(0, 1)


# -- geometric (MNIST-C) -----------------------------------------------------------------

def rotate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Rotation by ``c`` radians about the centre, either way at random."""
    angle = c * _signs(x.shape[0], gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return _affine(x, torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)).clamp(0, 1)


def shear(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Shear by ``c`` radians about the centre, either way at random (skimage's
    ``AffineTransform(shear=c)`` as MNIST-C used it: [[1, -sin c], [0, cos c]])."""
    s = c * _signs(x.shape[0], gen)
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    a = torch.stack([torch.stack([one, -torch.sin(s)], 1), torch.stack([zero, torch.cos(s)], 1)], 1)
    return _affine(x, a).clamp(0, 1)


def scale(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Shrunk about the centre to ``1 / c`` of its size."""
    a = torch.eye(2, dtype=torch.float64).expand(x.shape[0], 2, 2) * c
    return _affine(x, a).clamp(0, 1)


def translate(x: Tensor, c: int, gen: torch.Generator) -> Tensor:
    """Shifted by ``c`` pixels along each axis, each direction at random, zeros filling in."""
    b, h, w = x.shape
    dx, dy = (c * _signs(b, gen)).long(), (c * _signs(b, gen)).long()
    rows = torch.arange(h)[None, :] + dy[:, None]
    cols = torch.arange(w)[None, :] + dx[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    batch = torch.arange(b)[:, None, None]
    moved = x[batch, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    return torch.where(inside, moved, 0.0)


def stripe(x: Tensor, c: int, gen: torch.Generator) -> Tensor:
    """MNIST-C's stripe: the ``c`` columns at each side inverted."""
    x = x.clone()
    x[..., :c] = 1 - x[..., :c]
    x[..., x.shape[-1] - c:] = 1 - x[..., x.shape[-1] - c:]
    return x


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


# -- the cache ---------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """$FASHIONBENCH_CORRUPTIONS_DIR, else the per-user cache's fashionbench/corruptions
    ($XDG_CACHE_HOME/fashionbench/corruptions on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    try:  # absent on the lent GPU machines (see data.default_data_dir)
        import platformdirs
        base = Path(platformdirs.user_cache_dir("fashionbench"))
    except ImportError:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fashionbench"
    return base / "corruptions"


class CorruptionCache:
    """One .npz file per (corruption, severity, seed, set of images, VERSION) in
    ``folder``, holding the whole set corrupted (uint8): made once, written atomically,
    read back after. A file that cannot be read, or holds other images than its name
    says, is made again (with a warning). ``made`` counts the sets made by this cache."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()
        self.made = 0

    def path(self, name: str, severity: int, seed: int, source: str) -> Path:
        return self.folder / f"{source}-{name}-s{severity}-seed{seed}-v{VERSION}.npz"

    def images(self, images: Tensor, source: str, name: str, severity: int, seed: int) -> np.ndarray:
        """``images`` (uint8 (N, 1, H, W), named ``source``: the same name must always
        mean the same images) corrupted, as (N, 1, H, W) uint8, from the cache if there."""
        path = self.path(name, severity, seed, source)
        expected = tuple(images.shape)
        if path.exists():
            try:
                with np.load(path) as stored:
                    found = stored["images"]
                    if (found.shape == expected and found.dtype == np.uint8
                            and str(stored["name"]) == name and int(stored["severity"]) == severity
                            and int(stored["seed"]) == seed and int(stored["version"]) == VERSION):
                        return found
                why = "holds other images"
            except Exception as e:  # numpy and zipfile raise many kinds for a damaged file
                why = f"cannot be read ({type(e).__name__})"
            print(f"fashionbench: warning: {path} {why}; making it again", file=sys.stderr, flush=True)
        made = corrupt(images, name, severity, seed).numpy()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=made, name=name, severity=severity, seed=seed, version=VERSION)
        runs.make_dir(self.folder)
        runs.write_bytes(path, buffer.getvalue())
        self.made += 1
        return made

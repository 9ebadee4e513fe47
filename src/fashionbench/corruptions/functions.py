"""The corruptions, one function each, by family (noise, blur, weather, digital, geometric,
overlay): ``(x, c, gen)``, a float64 (B, H, W) batch in [0, 1], the severity's parameter
from ``table.SEVERITIES``, and the generator every draw comes from."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .ops import (
    affine,
    clipped_zoom,
    gaussian_filter,
    motion_kernel_blur,
    normal,
    pad,
    pixel_grid,
    quantized,
    sample,
    signs,
    through_pillow,
    uniform,
)

Tensor = torch.Tensor


# -- noise -------------------------------------------------------------------------------

def gaussian_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Additive Gaussian noise of standard deviation ``c``."""
    return (x + normal(x.shape, 0.0, c, gen)).clamp(0, 1)


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
    return (x + x * normal(x.shape, 0.0, c, gen)).clamp(0, 1)


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
    y = pad(disk.double()[None], r, "mirror").unsqueeze(1)
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
    return F.conv2d(pad(x, r, "mirror").unsqueeze(1), k[None, None]).squeeze(1).clamp(0, 1)


def glass_blur(x: Tensor, c: tuple[float, int, int], gen: torch.Generator) -> Tensor:
    """Glass: Gaussian blur of ``c[0]``, then ``c[2]`` rounds in which every inner pixel
    takes the value of a random neighbour up to ``c[1]`` pixels away, then the blur
    again. ImageNet-C swaps pixels one after another in a Python loop; here every pixel
    of a round draws at once (a gather, not a chain of swaps): the same local shuffle
    in distribution, checked against it by the mean change it makes."""
    sigma, delta, rounds = c
    b, h, w = x.shape
    x = quantized(gaussian_filter(x, sigma))
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
    angles = uniform(x.shape[0], -45.0, 45.0, gen)
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
        return array / 4 + wibble * uniform(array.shape, -wibble, wibble, gen)

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
    layer = clipped_zoom(normal(x.shape, c[0], c[1], gen), c[2], trim=False)
    layer = torch.where(layer < c[3], 0.0, layer).clamp(0, 1)
    angles = uniform(b, -135.0, -45.0, gen)
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
    return through_pillow(x, work)


def pixelate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Pixelation: shrunk to ``c`` of the side (box filter), enlarged back (nearest)."""
    def work(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.NEAREST)
    return through_pillow(x, work)


def elastic_transform(x: Tensor, c: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Elastic distortion (Simard et al. 2003, the one MNIST-C's and ImageNet-C's build on):
    every pixel displaced by a field of uniform noise in [-1, 1] smoothed by a Gaussian of
    ``c[1]`` pixels and scaled by ``c[0]``, bilinear, borders reflected. (ImageNet-C's and
    CIFAR-10-C's also move three points of a random affine map first, by amounts that
    shrink as the severity grows, so their severities are not ordered on a 28x28 image:
    the affine maps are rotate, shear and scale's here.)"""
    alpha, sigma = c
    rows, cols = pixel_grid(*x.shape[-2:])
    dx = gaussian_filter(uniform(x.shape, -1.0, 1.0, gen), sigma, "reflect", truncate=3) * alpha
    dy = gaussian_filter(uniform(x.shape, -1.0, 1.0, gen), sigma, "reflect", truncate=3) * alpha
    return sample(x, rows + dy, cols + dx, "reflection", align_corners=False).clamp(0, 1)


# -- geometric (MNIST-C) -----------------------------------------------------------------

def rotate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Rotation by ``c`` radians about the centre, either way at random."""
    angle = c * signs(x.shape[0], gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return affine(x, torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)).clamp(0, 1)


def shear(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Shear by ``c`` radians about the centre, either way at random (skimage's
    ``AffineTransform(shear=c)`` as MNIST-C used it: [[1, -sin c], [0, cos c]])."""
    s = c * signs(x.shape[0], gen)
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    a = torch.stack([torch.stack([one, -torch.sin(s)], 1), torch.stack([zero, torch.cos(s)], 1)], 1)
    return affine(x, a).clamp(0, 1)


def scale(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Shrunk about the centre to ``1 / c`` of its size."""
    a = torch.eye(2, dtype=torch.float64).expand(x.shape[0], 2, 2) * c
    return affine(x, a).clamp(0, 1)


def translate(x: Tensor, c: int, gen: torch.Generator) -> Tensor:
    """Shifted by ``c`` pixels along each axis, each direction at random, zeros filling in."""
    b, h, w = x.shape
    dx, dy = (c * signs(b, gen)).long(), (c * signs(b, gen)).long()
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

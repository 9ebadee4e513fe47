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

from .cache import CACHE_ENV, CorruptionCache, default_cache_dir
from .ops import clipped_zoom, gaussian_filter, motion_kernel_blur
from .table import (
    CORRUPTIONS,
    LEVELS,
    NAMES,
    SEVERITIES,
    VERSION,
    Corruption,
    check_levels,
    check_names,
    corrupt,
    generator,
)

__all__ = [
    "CACHE_ENV", "CORRUPTIONS", "LEVELS", "NAMES", "SEVERITIES", "VERSION", "Corruption",
    "CorruptionCache", "check_levels", "check_names", "clipped_zoom", "corrupt", "default_cache_dir",
    "gaussian_filter", "generator", "motion_kernel_blur",
]

"""``fashionbench predict``: classify image files with a finished run's model.

Each file becomes a 28x28 Fashion-MNIST-like image the way Zalando made the dataset
from product photos (github.com/zalandoresearch/fashion-mnist, README, "How to make
it"), then goes through the model exactly as the test set does in training.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..data import IMAGE_SIZE
from ..errors import FashionbenchError, UsageError

# Zalando trimmed edges within 5% of the maximum intensity of the corner colour on
# their 762x1000 product photos, where that trims a sliver of one output pixel. On a
# small image it trims whole rows of faint garment edge that the dataset keeps (6.4% of
# the test images have an outermost row or column on their long side entirely within 5%)
# and so rescales them. Here only rounding (JPEG, 16-bit and colour conversion) counts
# as background: Fashion-MNIST test images enlarged 4x agree with the dataset's own
# predictions 99.5% of the time, against 98.9% with 5% (measured with the tests' model).
TRIM_TOLERANCE = 1
# Zalando resized by subsampling (skipping rows and columns), as NEAREST does. Area
# averaging (BOX) gives the same on an image enlarged by repeating pixels, but blurs a
# smoothly enlarged one, which the model then misreads more often: test images enlarged
# 4x (bicubic) and resized back, untrimmed, agree 97.9% with NEAREST and 93.5% with BOX.
RESAMPLE = Image.Resampling.NEAREST


def grayscale(image: Image.Image) -> np.ndarray:
    """8-bit grayscale pixels (H, W) of any Pillow image: upright as its EXIF says,
    transparency composited on white (the product photos' background), 16-bit scaled."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16-bit PNG, TIFF: 0..65535 -> 0..255 (Pillow would clip)
        return ((np.asarray(image, dtype=np.int64).clip(0, 65535) + 128) // 257).astype(np.uint8)
    if "A" in image.getbands() or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image.convert("L"))


def background(gray: np.ndarray) -> int:
    """The colour around the garment: the median of the outermost rows and columns (the
    "corner colour" of Zalando's recipe, robust to a garment touching an edge or a noisy corner)."""
    frame = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return int(np.median(frame))


def fit_to_28(gray: np.ndarray, fill: int) -> np.ndarray:
    """Trim edges within TRIM_TOLERANCE of ``fill``, resize the longest side to 28 and
    centre on a 28x28 canvas of ``fill``."""
    rows, cols = np.nonzero(np.abs(gray.astype(np.int16) - fill) > TRIM_TOLERANCE)
    if len(rows):  # a blank image has nothing to trim to: keep it whole
        gray = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    height, width = gray.shape
    scale = IMAGE_SIZE / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(gray).resize((new_width, new_height), RESAMPLE))
    canvas = np.full((IMAGE_SIZE, IMAGE_SIZE), fill, np.uint8)
    # An odd spare pixel goes before the image, as in the dataset's own images.
    top, left = (IMAGE_SIZE - new_height + 1) // 2, (IMAGE_SIZE - new_width + 1) // 2
    canvas[top:top + new_height, left:left + new_width] = resized
    return canvas


def to_fashion_mnist(image: Image.Image, invert: str = "auto") -> np.ndarray:
    """A uint8 (28, 28) image as Fashion-MNIST's own were made (Zalando's README, "How
    to make it"): trim edges close to the background colour, resize the longest side to
    28 by subsampling, extend the shortest side to 28 by centring on the background,
    negate so that garments are light on black, 8-bit grayscale.

    Differences from Zalando's recipe: the image is made grayscale first (the model sees
    only intensity); "close" is within 1 level, not 5% of the maximum intensity (see
    TRIM_TOLERANCE); there is no sharpening (tuned for their photos, it would sharpen an
    already dataset-like image twice).

    Negation is ``invert``: "yes", "no" or "auto", which negates when the border is light.
    An image that is already 28x28 is taken as it is, negated or not, so a Fashion-MNIST
    image saved as a file predicts exactly as the dataset's own tensor does.
    """
    gray = grayscale(image)
    fill = background(gray)
    negate = fill >= 128 if invert == "auto" else invert == "yes"
    if gray.shape != (IMAGE_SIZE, IMAGE_SIZE):
        gray = fit_to_28(gray, fill)
    return 255 - gray if negate else gray


def warn_if_blank(pixels: np.ndarray, size: tuple[int, int], source: str) -> None:
    """A warning on stderr where the model would see one shade throughout (a 1x1 image,
    a blank one, or a speck lost in the resizing): it still gives a class, often with
    confidence, but one that says nothing about the image."""
    if pixels.min() == pixels.max():
        report_warning(f"{source}: {size[0]}x{size[1]} pixels, blank as the model sees it (one shade "
                       "throughout): its prediction is not meaningful")


def read_image(path: Path, invert: str = "auto") -> np.ndarray:
    """``path`` as a Fashion-MNIST image (see to_fashion_mnist), with a warning if it is
    blank; FashionbenchError naming the file where it cannot be read or is larger than
    Pillow's bound against decompression bombs (Image.MAX_IMAGE_PIXELS, 89 million pixels
    unless changed): Pillow only warns up to twice the bound, and a warning would go on
    decoding gigabytes for an image the model sees at 28x28."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                pixels = to_fashion_mnist(image, invert)
                warn_if_blank(pixels, image.size, str(path))
                return pixels
    except FileNotFoundError:
        raise FashionbenchError(f"{path}: no such file or folder") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise FashionbenchError(f"{path}: more than {Image.MAX_IMAGE_PIXELS:,} pixels, refused (Pillow's "
                                "bound against decompression bombs, PIL.Image.MAX_IMAGE_PIXELS)") from None
    # Pillow reports an unknown format, a truncated or corrupt file or a decoder it lacks
    # in all these ways.
    except (OSError, ValueError, SyntaxError) as e:
        raise FashionbenchError(f"{path}: cannot read as an image ({e})") from None


# Arrays as predict takes them: channels last, as Pillow and Fashion-MNIST's files have them.
ARRAY_SHAPES = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def array_pixels(image: Any, invert: str, source: str) -> np.ndarray:
    """An array (NumPy, torch, nested lists) as a Fashion-MNIST image: a uint8 28x28 one
    as it is, any other converted as a file is; UsageError naming the accepted shapes."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
    array = np.asarray(image)
    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[:, :, 0]
    if (array.dtype != np.uint8 or array.ndim not in (2, 3) or 0 in shape
            or array.ndim == 3 and shape[2] not in (3, 4)):
        hint = ("; channels first? pass array.transpose(1, 2, 0)"
                if array.ndim == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4) else
                "; one image alone? pass it in a list, [image]" if array.ndim == 1 else "")
        raise UsageError(f"{source}: an array of shape {shape} and dtype {array.dtype}; predict takes "
                         f"uint8 arrays of shape {ARRAY_SHAPES} (0 to 255){hint}")
    pixels = array if array.shape == (IMAGE_SIZE, IMAGE_SIZE) else to_fashion_mnist(Image.fromarray(array), invert)
    warn_if_blank(pixels, (shape[1], shape[0]), source)
    return pixels


def image_pixels(image: Any, invert: str, source: str) -> np.ndarray:
    """One image given to predict, as a Fashion-MNIST image: a file path, a PIL image or an
    array (``array_pixels``); ``source`` names it in warnings and errors."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image), invert)
    if isinstance(image, Image.Image):
        pixels = to_fashion_mnist(image, invert)
        warn_if_blank(pixels, image.size, source)
        return pixels
    return array_pixels(image, invert, source)


def image_extensions() -> set[str]:
    """File extensions of the formats this Pillow can read (not those it only writes)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand_folders(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files to predict, and error messages: a folder is every file in it with an image
    extension (sorted, hidden files skipped, subfolders not searched); any other path
    is kept as given, for reading to report if it cannot be read."""
    files, errors = [], []
    extensions = image_extensions()
    for arg in map(Path, paths):
        if not arg.is_dir():
            files.append(arg)
            continue
        found = sorted(p for p in arg.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in extensions)
        if not found:
            errors.append(f"{arg}: no image files in this folder")
        files += found
    return files, errors


def report_warning(message: str) -> None:
    print(f"fashionbench: warning: {message}", file=sys.stderr, flush=True)

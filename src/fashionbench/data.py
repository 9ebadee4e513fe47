"""Fashion-MNIST: locate, download, verify and parse the original IDX files.

The data directory is chosen as ``--data-dir`` > ``$FASHIONBENCH_DATA_DIR`` > a
per-user cache folder. A folder that is named must exist (a typo is reported, not
created); the cache folder is created and missing files are downloaded into it.
Each file may be the original ``.gz`` or its gunzipped IDX file (the ``.gz`` wins
when both are there). Files are checked against their MD5 sums every time they are
loaded; a bad file is reported, never used and never overwritten (the user may
have put it there on purpose).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from .errors import FashionbenchError, UsageError

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SIZE = 28
# Published with the dataset (github.com/zalandoresearch/fashion-mnist).
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# The same files gunzipped (as many people keep them). Zalando publishes only the
# sums above; these are the MD5 sums of the decompressed published files, computed
# once by gunzipping the four verified originals (tests/test_data.py recomputes them).
UNPACKED_FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
CHECKSUMS = {**FILES, **UNPACKED_FILES}
# Zalando's own site first, then mirrors that serve byte-identical files.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
DATA_DIR_ENV = "FASHIONBENCH_DATA_DIR"
MIRROR_ENV = "FASHIONBENCH_MIRRORS"  # extra base URLs (file:// too), tried first

IDX_UBYTE = 0x08


def default_data_dir() -> Path:
    # Imported here, where it is needed: a bare GPU machine's Python may lack platformdirs
    # (benchmarks/gpu_table.py gives the data there in a folder named by $FASHIONBENCH_DATA_DIR).
    import platformdirs

    return Path(platformdirs.user_cache_dir("fashionbench")) / "fashion-mnist"


DEFAULT_DIR = "the default cache folder"


def locate_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data folder and how it was chosen, for messages: "from --data-dir",
    "from $FASHIONBENCH_DATA_DIR" or "the default cache folder" (``DEFAULT_DIR``)."""
    if data_dir:
        return Path(data_dir).expanduser(), "from --data-dir"
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser(), f"from ${DATA_DIR_ENV}"
    return Path(default_data_dir()).expanduser(), DEFAULT_DIR


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return locate_data_dir(data_dir)[0]


def check_data_dir(root: Path, how: str) -> None:
    """A folder the user named must exist: a typo is reported, never created."""
    if how == DEFAULT_DIR or root.is_dir():
        return
    if root.exists():
        raise FashionbenchError(f"{root} ({how}): not a folder; name the folder that holds the "
                                "four Fashion-MNIST files")
    if how != "from --data-dir":
        fix = f"unset ${DATA_DIR_ENV}"
    elif os.environ.get(DATA_DIR_ENV):
        fix = f"drop --data-dir and unset ${DATA_DIR_ENV}"
    else:
        fix = "drop --data-dir"
    raise FashionbenchError(f"{root} ({how}): no such folder; name the folder that holds the four "
                            f"Fashion-MNIST files, or {fix} to download them into the cache folder")


def mirrors() -> list[str]:
    extra = os.environ.get(MIRROR_ENV, "").replace(",", " ").split()
    return [m if m.endswith("/") else m + "/" for m in extra] + list(MIRRORS)


def _download(url: str, dest: Path, expected_md5: str) -> None:
    """Stream ``url`` into a temp file beside ``dest``; rename only if the MD5 matches."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            live = sys.stderr.isatty()
            if not live:
                print(f"downloading {url}", file=sys.stderr, flush=True)
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False,
                      disable=not live) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != expected_md5:
            raise OSError(f"checksum mismatch (got {digest.hexdigest()})")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _reason(error: Exception) -> str:
    """A short reason for a failed download: "Not Found", "No such file or directory"."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def ensure_file(root: Path, name: str, download: bool = True, how: str = DEFAULT_DIR) -> Path:
    """The path of one dataset file: ``name`` (a ``.gz`` from ``FILES``), else its gunzipped
    IDX file, else ``name`` downloaded (and verified) into ``root``."""
    path = root / name
    if path.exists():
        return path
    unpacked = root / name.removesuffix(".gz")
    if unpacked.exists():
        return unpacked
    if not download:
        raise FashionbenchError(f"{path}: file missing and downloading is off")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FashionbenchError(f"{root} ({how}): cannot create the data directory ({e.strerror})") from None
    # Write bits, not just os.access: root may write anywhere, but a folder marked
    # read-only (such as a shared copy of the dataset) is never ours to change.
    if not (os.access(root, os.W_OK) and root.stat().st_mode & 0o222):
        raise FashionbenchError(f"{path}: file missing and {root} ({how}) is read-only")
    failures = []
    for base in mirrors():
        try:
            _download(base + name, path, FILES[name])
            return path
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            failures.append(f"{base} ({_reason(e)})")
    raise FashionbenchError(
        f"{root} ({how}): could not download {name} ({len(failures)} mirror"
        f"{'s' if len(failures) != 1 else ''} failed; first: {failures[0]}); add a mirror to "
        f"${MIRROR_ENV}, or offline, copy the four files (.gz or gunzipped) into a folder and "
        "pass it with --data-dir")


def parse_idx(data: bytes, ndim: int, source: str = "data",
              count: int | None = None, max_label: int | None = None) -> np.ndarray:
    """Parse an (uncompressed) IDX array of unsigned bytes, validating everything."""
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (IDX_UBYTE << 8) | ndim
    if len(data) >= 4 and magic != expected_magic:
        raise FashionbenchError(
            f"{source}: bad magic number 0x{magic:08x} (expected 0x{expected_magic:08x})")
    if len(data) < 4 + 4 * ndim:
        raise FashionbenchError(f"{source}: short read (file ends inside the IDX header)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        raise FashionbenchError(
            f"{source}: bad dimensions {dims[1]}x{dims[2]} (expected {IMAGE_SIZE}x{IMAGE_SIZE})")
    if count is not None and dims[0] != count:
        raise FashionbenchError(f"{source}: holds {dims[0]} items (expected {count})")
    body = memoryview(data)[4 + 4 * ndim:]
    size = int(np.prod(dims))
    if len(body) < size:
        raise FashionbenchError(f"{source}: short read ({len(body)} of {size} data bytes)")
    if len(body) > size:
        raise FashionbenchError(f"{source}: {len(body) - size} unexpected bytes after the data")
    array = np.frombuffer(body, dtype=np.uint8).reshape(dims)
    if max_label is not None and array.size and int(array.max()) > max_label:
        raise FashionbenchError(f"{source}: label {int(array.max())} out of range 0-{max_label}")
    return array


def read_idx(path: Path, ndim: int, count: int | None = None,
             max_label: int | None = None, md5: str | None = None) -> np.ndarray:
    """Read an IDX file, gunzipping a ``.gz``; with ``md5``, also check the file (as
    stored) against that sum.

    The structure is checked before the sum so that the error names the actual
    fault (bad magic, short read) rather than only "checksum mismatch".
    """
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except EOFError:
        raise FashionbenchError(f"{path}: short read (truncated gzip stream)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise FashionbenchError(f"{path}: corrupt gzip stream ({e})") from None
    except OSError as e:
        raise FashionbenchError(f"{path}: cannot read ({e.strerror})") from None
    array = parse_idx(data, ndim, str(path), count, max_label)
    if md5 is not None and (got := hashlib.md5(raw).hexdigest()) != md5:
        raise FashionbenchError(
            f"{path}: checksum mismatch (expected MD5 {md5}, got {got}); the file is not "
            "the original, delete it to download it again")
    return array


@dataclass
class FashionMNIST:
    """The four arrays as CPU tensors: images uint8 (N, 1, 28, 28), labels int64 (N,)."""
    root: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    md5: dict[str, str]  # verified MD5 of each file read, keyed by its name (.gz or not)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> FashionMNIST:
    root, how = locate_data_dir(data_dir)
    check_data_dir(root, how)
    paths = {name: ensure_file(root, name, download, how) for name in FILES}

    def pair(prefix: str, count: int):
        images, labels = (paths[f"{prefix}-images-idx3-ubyte.gz"], paths[f"{prefix}-labels-idx1-ubyte.gz"])
        images = read_idx(images, 3, count, md5=CHECKSUMS[images.name])
        labels = read_idx(labels, 1, count, len(CLASSES) - 1, md5=CHECKSUMS[labels.name])
        return (torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)))

    train_x, train_y = pair("train", 60_000)
    test_x, test_y = pair("t10k", 10_000)
    return FashionMNIST(root, train_x, train_y, test_x, test_y,
                        {path.name: CHECKSUMS[path.name] for path in paths.values()})


def stratified_subset(labels: torch.Tensor, size: int, seed: int, what: str,
                      pool: str = "images") -> torch.Tensor:
    """Sorted indices of a seeded, class-stratified subset of ``size`` examples.

    ``what`` names the setting (``data.test_subset``) and ``pool`` the examples drawn
    from, for the message when ``size`` cannot be drawn from them."""
    n, classes = len(labels), len(torch.unique(labels))
    if size > n:
        raise UsageError(f"{what} {size} is larger than the {n:,} {pool}")
    if size < classes:
        raise UsageError(f"{what} {size} is smaller than the {classes} classes (a stratified "
                         "subset holds at least one image of each)")
    if size == n:
        return torch.arange(n)
    if n - size < classes:
        raise UsageError(f"{what} {size} leaves out only {n - size} of the {n:,} {pool}, fewer than the "
                         f"{classes} classes (a stratified draw needs one of each); use all {n:,} or at "
                         f"most {n - classes:,}")
    try:
        index, _ = train_test_split(np.arange(n), train_size=size, stratify=labels.numpy(),
                                    random_state=seed)
    except ValueError:  # some class has a single example
        raise UsageError(f"{what} {size}: cannot draw a class-stratified subset from the {n:,} "
                         f"{pool}, as some class has a single image there; use all {n:,}") from None
    return torch.from_numpy(np.sort(index))


def stratified_split(labels: torch.Tensor, val_size: int, seed: int,
                     train_subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, class-stratified (train, val) indices; optionally a stratified train subset."""
    n, classes = len(labels), len(torch.unique(labels))
    if val_size < classes:
        raise UsageError(f"data.val_size {val_size} is smaller than the {classes} classes (the "
                         "validation set holds at least one image of each)")
    if n - val_size < classes:
        raise UsageError(f"data.val_size {val_size} leaves only {max(n - val_size, 0):,} of the "
                         f"{n:,} training images for training, fewer than the {classes} classes; "
                         f"use at most {n - classes:,}")
    try:
        train_idx, val_idx = train_test_split(np.arange(n), test_size=val_size,
                                              stratify=labels.numpy(), random_state=seed)
    except ValueError:  # a class with a single image
        raise UsageError(f"data.val_size {val_size}: cannot split the {n:,} training images "
                         "class-stratified (too few images of some class)") from None
    train_idx = torch.from_numpy(np.sort(train_idx))
    if train_subset is not None:
        pool = f"training images left after data.val_size {val_size}"
        train_idx = train_idx[stratified_subset(labels[train_idx], train_subset, seed,
                                                "data.train_subset", pool)]
    return train_idx, torch.from_numpy(np.sort(val_idx))

"""Fashion-MNIST: locate, download, verify and parse the original IDX files.

The data directory is chosen as ``--data-dir`` > ``$FASHIONBENCH_DATA_DIR`` > a
per-user cache folder. Files are checked against the MD5 sums published with the
dataset every time they are loaded; a bad file is reported, never used and never
overwritten (the user may have put it there on purpose).
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
import platformdirs
import torch
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from .errors import FashionbenchError

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
    return Path(platformdirs.user_cache_dir("fashionbench")) / "fashion-mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()
    return Path(chosen).expanduser()


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


def ensure_file(root: Path, name: str, download: bool = True) -> Path:
    """Return the path of one dataset file, downloading (and verifying) it if missing."""
    path = root / name
    if path.exists():
        return path
    if not download:
        raise FashionbenchError(f"{path}: file missing and downloading is off")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FashionbenchError(f"{root}: cannot create the data directory ({e.strerror})") from None
    # Write bits, not just os.access: root may write anywhere, but a folder marked
    # read-only (such as a shared copy of the dataset) is never ours to change.
    if not (os.access(root, os.W_OK) and root.stat().st_mode & 0o222):
        raise FashionbenchError(f"{path}: file missing and {root} is read-only")
    failures = []
    for base in mirrors():
        try:
            _download(base + name, path, FILES[name])
            return path
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            failures.append(f"{base} ({getattr(e, 'reason', e)})")
    raise FashionbenchError(f"{name}: download failed from every mirror: " + "; ".join(failures))


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
    """Read a gzipped IDX file; with ``md5``, also check the file against that sum.

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
    md5: dict[str, str]


def load_fashion_mnist(data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> FashionMNIST:
    root = resolve_data_dir(data_dir)
    paths = {name: ensure_file(root, name, download) for name in FILES}

    def pair(prefix: str, count: int):
        images, labels = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        images = read_idx(paths[images], 3, count, md5=FILES[images])
        labels = read_idx(paths[labels], 1, count, len(CLASSES) - 1, md5=FILES[labels])
        return (torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)))

    train_x, train_y = pair("train", 60_000)
    test_x, test_y = pair("t10k", 10_000)
    return FashionMNIST(root, train_x, train_y, test_x, test_y, dict(FILES))


def stratified_subset(labels: torch.Tensor, size: int, seed: int, what: str) -> torch.Tensor:
    """Sorted indices of a seeded, class-stratified subset of ``size`` examples."""
    n = len(labels)
    if not len(CLASSES) <= size <= n:
        raise FashionbenchError(f"{what} must be between {len(CLASSES)} and {n}, got {size}")
    if size == n:
        return torch.arange(n)
    index, _ = train_test_split(np.arange(n), train_size=size, stratify=labels.numpy(),
                                random_state=seed)
    return torch.from_numpy(np.sort(index))


def stratified_split(labels: torch.Tensor, val_size: int, seed: int,
                     train_subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, class-stratified (train, val) indices; optionally a stratified train subset."""
    n = len(labels)
    if not 0 < val_size < n:
        raise FashionbenchError(f"data.val_size must be between 1 and {n - 1}, got {val_size}")
    train_idx, val_idx = train_test_split(np.arange(n), test_size=val_size,
                                          stratify=labels.numpy(), random_state=seed)
    train_idx = torch.from_numpy(np.sort(train_idx))
    if train_subset is not None:
        train_idx = train_idx[stratified_subset(labels[train_idx], train_subset, seed,
                                                "train subset")]
    return train_idx, torch.from_numpy(np.sort(val_idx))

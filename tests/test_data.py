import gzip
import shutil
import stat

import numpy as np
import pytest
import torch

from fashionbench import data as fm
from fashionbench.data import FILES, load_fashion_mnist, parse_idx, read_idx, stratified_split
from fashionbench.errors import FashionbenchError

from conftest import run_cli, write_idx


def header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def test_parse_valid_images_and_labels():
    images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    parsed = parse_idx(header(0x803, 2, 28, 28) + images.tobytes(), 3, count=2)
    assert parsed.shape == (2, 28, 28) and np.array_equal(parsed, images)
    labels = parse_idx(header(0x801, 3) + bytes([0, 9, 4]), 1, count=3, max_label=9)
    assert labels.tolist() == [0, 9, 4]


@pytest.mark.parametrize("blob, ndim, kwargs, fault", [
    (header(0x802, 2, 28, 28) + bytes(2 * 784), 3, {}, "bad magic number 0x00000802"),
    (header(0x801, 2) + bytes(2), 3, {}, "bad magic"),
    (header(0x803, 2, 28, 28) + bytes(784), 3, {}, "short read (784 of 1568"),
    (header(0x803, 2)[:6], 3, {}, "short read (file ends inside the IDX header)"),
    (header(0x803, 1, 28, 28) + bytes(785), 3, {}, "1 unexpected bytes"),
    (header(0x803, 1, 32, 32) + bytes(1024), 3, {}, "bad dimensions 32x32"),
    (header(0x801, 3) + bytes([1, 2, 3]), 1, {"count": 4}, "holds 3 items (expected 4)"),
    (header(0x801, 3) + bytes([1, 10, 3]), 1, {"max_label": 9}, "label 10 out of range 0-9"),
])
def test_parse_rejects_each_fault(blob, ndim, kwargs, fault):
    with pytest.raises(FashionbenchError) as err:
        parse_idx(blob, ndim, "x.idx", **kwargs)
    assert str(err.value).startswith("x.idx: ") and fault in str(err.value)
    assert "\n" not in str(err.value)


def test_read_idx_gzip_faults(tmp_path):
    good = write_idx(tmp_path / "labels.gz", header(0x801, 3), bytes([1, 2, 3]))
    assert read_idx(good, 1).tolist() == [1, 2, 3]
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(good.read_bytes()[:-6])
    with pytest.raises(FashionbenchError, match="truncated.gz: short read"):
        read_idx(truncated, 1)
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(FashionbenchError, match="garbage.gz: corrupt gzip"):
        read_idx(garbage, 1)
    with pytest.raises(FashionbenchError, match="checksum mismatch"):
        read_idx(good, 1, md5="0" * 32)


def test_real_data_facts(data):
    assert data.train_images.shape == (60_000, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert abs(data.train_images.float().mean().item() / 255 - 0.2860) < 1e-4
    assert abs(data.test_images.float().mean().item() / 255 - 0.2868) < 1e-4


def test_split_is_stratified_disjoint_and_seeded(data):
    train, val = stratified_split(data.train_labels, 5000, seed=0)
    assert len(train) == 55_000 and len(val) == 5000
    assert len(set(train.tolist()) | set(val.tolist())) == 60_000
    assert torch.bincount(data.train_labels[val]).tolist() == [500] * 10
    again = stratified_split(data.train_labels, 5000, seed=0)
    assert torch.equal(again[1], val)
    other = stratified_split(data.train_labels, 5000, seed=1)
    assert not torch.equal(other[1], val)
    sub, val2 = stratified_split(data.train_labels, 5000, seed=0, train_subset=10_000)
    assert torch.equal(val2, val) and len(sub) == 10_000
    assert torch.bincount(data.train_labels[sub]).tolist() == [1000] * 10
    assert not set(sub.tolist()) & set(val.tolist())


def copy_dataset(src, dst):
    dst.mkdir()
    for name in FILES:
        shutil.copy(src / name, dst / name)
    return dst


def test_corrupt_file_gives_one_line_error_and_is_kept(data_dir, tmp_path):
    folder = copy_dataset(data_dir, tmp_path / "fm")
    target = folder / "train-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(target.read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # still well-formed, but not the original
    target.write_bytes(gzip.compress(bytes(labels)))
    before = target.read_bytes()
    result = run_cli("data", "--data-dir", str(folder))
    assert result.returncode == 1  # a data problem, not a usage error
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(target) in result.stderr and "checksum mismatch" in result.stderr
    assert target.read_bytes() == before  # never overwritten

    target.write_bytes(before[: len(before) // 2])
    result = run_cli("data", "--data-dir", str(folder))
    assert result.returncode == 1 and "short read" in result.stderr


def test_download_from_mirror_list(data, data_dir, tmp_path, monkeypatch):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in FILES:  # a mirror serving the wrong bytes must be passed over
        (bad / name).write_bytes(b"not the file")
    monkeypatch.setenv(fm.MIRROR_ENV, f"file://{tmp_path}/missing/ {bad.as_uri()} {data_dir.resolve().as_uri()}")
    monkeypatch.setattr(fm, "MIRRORS", ())
    dest = tmp_path / "cache" / "fm"
    loaded = load_fashion_mnist(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)  # no temp files left
    assert torch.equal(loaded.test_labels, data.test_labels)


def test_download_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.MIRROR_ENV, f"file://{tmp_path}/nowhere/")
    monkeypatch.setattr(fm, "MIRRORS", ())
    dest = tmp_path / "fm"
    with pytest.raises(FashionbenchError, match="download failed from every mirror"):
        load_fashion_mnist(dest)
    assert list(dest.iterdir()) == []


def test_read_only_folder_is_never_written(data_dir, tmp_path):
    complete = copy_dataset(data_dir, tmp_path / "complete")
    partial = copy_dataset(data_dir, tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    for folder in (complete, partial):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        load_fashion_mnist(complete)  # complete: read, nothing written
        with pytest.raises(FashionbenchError, match="t10k-labels-idx1-ubyte.gz: file missing and .* is read-only"):
            load_fashion_mnist(partial)
        assert sorted(p.name for p in complete.iterdir()) == sorted(FILES)
        assert len(list(partial.iterdir())) == 3
    finally:
        for folder in (complete, partial):
            folder.chmod(stat.S_IRWXU)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.DATA_DIR_ENV, str(tmp_path / "env"))
    assert fm.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert fm.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(fm.DATA_DIR_ENV)
    assert fm.resolve_data_dir() == fm.default_data_dir()

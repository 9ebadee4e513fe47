import gzip
import hashlib
import re
import shutil
import stat

import numpy as np
import pytest
import torch

from fashionbench import data as fm
from fashionbench.data import FILES, load_fashion_mnist, parse_idx, read_idx, stratified_split
from fashionbench.errors import FashionbenchError, UsageError

from conftest import run_main, write_idx
from test_cli import assert_one_line_error


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
    result = run_main("data", "--data-dir", str(folder))
    assert result.returncode == 1  # a data problem, not a usage error
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(target) in result.stderr and "checksum mismatch" in result.stderr
    assert target.read_bytes() == before  # never overwritten

    target.write_bytes(before[: len(before) // 2])
    result = run_main("data", "--data-dir", str(folder))
    assert result.returncode == 1 and "short read" in result.stderr


def no_mirrors(monkeypatch, tmp_path, count=1):
    """Mirrors that all fail at once, with no network: ``count`` missing file:// folders."""
    urls = " ".join(f"file://{tmp_path}/nowhere-{i}/" for i in range(count))
    monkeypatch.setenv(fm.MIRROR_ENV, urls)
    monkeypatch.setattr(fm, "MIRRORS", ())


def use_default_cache(monkeypatch, folder):
    monkeypatch.delenv(fm.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(fm, "default_data_dir", lambda: folder)


def test_download_from_mirror_list(data, data_dir, tmp_path, monkeypatch):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in FILES:  # a mirror serving the wrong bytes must be passed over
        (bad / name).write_bytes(b"not the file")
    monkeypatch.setenv(fm.MIRROR_ENV, f"file://{tmp_path}/missing/ {bad.as_uri()} {data_dir.resolve().as_uri()}")
    monkeypatch.setattr(fm, "MIRRORS", ())
    cache = tmp_path / "cache" / "fm"  # the default cache folder is created when missing
    use_default_cache(monkeypatch, cache)
    loaded = load_fashion_mnist()
    assert loaded.root == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # no temp files left
    assert torch.equal(loaded.test_labels, data.test_labels)


@pytest.mark.parametrize("explicit", [True, False])
def test_download_failure_is_one_short_line(tmp_path, monkeypatch, explicit):
    no_mirrors(monkeypatch, tmp_path, count=3)
    dest = tmp_path / "fm"
    if explicit:  # an existing folder that is named is downloaded into, as the cache is
        dest.mkdir()
        monkeypatch.setenv(fm.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    else:
        use_default_cache(monkeypatch, dest)
    with pytest.raises(FashionbenchError) as err:
        load_fashion_mnist(dest if explicit else None)
    message = str(err.value)
    how = "from --data-dir" if explicit else "the default cache folder"
    assert f"{dest} ({how}): could not download train-images-idx3-ubyte.gz" in message
    assert "3 mirrors failed; first: " in message and "No such file or directory" in message
    assert fm.MIRROR_ENV in message and "--data-dir" in message
    assert "\n" not in message and len(message) < 400 + len(str(tmp_path)) * 2, message
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("how", ["--data-dir", "$" + fm.DATA_DIR_ENV])
def test_missing_named_folder_is_not_created(tmp_path, how):
    typo = tmp_path / "typo-folder"
    env = {fm.MIRROR_ENV: f"file://{tmp_path}/nowhere/", fm.DATA_DIR_ENV: str(typo)}
    args = ["data", "--data-dir", str(typo)] if how == "--data-dir" else ["data"]
    if how == "--data-dir":
        env[fm.DATA_DIR_ENV] = str(tmp_path / "also-missing")
    result = run_main(*args, env=env)
    fix = f"drop --data-dir and unset ${fm.DATA_DIR_ENV}" if how == "--data-dir" else f"unset ${fm.DATA_DIR_ENV}"
    assert_one_line_error(result, f"{typo} (from {how}): no such folder", "Fashion-MNIST", fix, status=1)
    assert len(result.stderr) < 300 + len(str(typo)), result.stderr
    assert not typo.exists() and not (tmp_path / "also-missing").exists()


def test_named_path_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FashionbenchError, match=re.escape(f"{path} (from --data-dir): not a folder")):
        load_fashion_mnist(path)


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
    assert fm.locate_data_dir(tmp_path / "flag") == (tmp_path / "flag", "from --data-dir")
    assert fm.locate_data_dir() == (tmp_path / "env", f"from ${fm.DATA_DIR_ENV}")
    monkeypatch.delenv(fm.DATA_DIR_ENV)
    assert fm.resolve_data_dir() == fm.default_data_dir()
    assert fm.locate_data_dir() == (fm.default_data_dir(), "the default cache folder")


def gunzip_dataset(src, dst, names=FILES):
    dst.mkdir()
    for name in names:
        (dst / name.removesuffix(".gz")).write_bytes(gzip.decompress((src / name).read_bytes()))
    return dst


def test_unpacked_checksums_are_those_of_the_published_files(data_dir):
    # Zalando publishes the sums of the .gz files only: recompute the unpacked ones.
    assert list(fm.UNPACKED_FILES) == [name.removesuffix(".gz") for name in FILES]
    for name, md5 in FILES.items():
        packed = (data_dir / name).read_bytes()
        assert hashlib.md5(packed).hexdigest() == md5
        assert hashlib.md5(gzip.decompress(packed)).hexdigest() == fm.UNPACKED_FILES[name.removesuffix(".gz")]


def test_unpacked_idx_files_are_accepted(data, data_dir, tmp_path, monkeypatch):
    no_mirrors(monkeypatch, tmp_path)  # nothing may be downloaded
    folder = gunzip_dataset(data_dir, tmp_path / "unpacked")
    loaded = load_fashion_mnist(folder)
    assert torch.equal(loaded.train_images, data.train_images)
    assert torch.equal(loaded.test_labels, data.test_labels)
    assert loaded.md5 == fm.UNPACKED_FILES  # the sums of the files actually read
    assert sorted(p.name for p in folder.iterdir()) == sorted(fm.UNPACKED_FILES)


def test_data_command_prints_the_sums_of_the_files_read(data_dir, tmp_path):
    folder = gunzip_dataset(data_dir, tmp_path / "unpacked")
    shutil.copy(data_dir / "t10k-labels-idx1-ubyte.gz", folder)
    result = run_main("data", "--data-dir", str(folder), env={fm.MIRROR_ENV: f"file://{tmp_path}/nowhere/"})
    assert result.returncode == 0, result.stderr
    assert "f4a8712d7a061bf5bd6d2ca38dc4d50a  train-images-idx3-ubyte\n" in result.stdout
    assert "bb300cfdad3c16e7a12a480ee83cd310  t10k-labels-idx1-ubyte.gz\n" in result.stdout


def test_gz_wins_over_unpacked_and_folders_may_mix(data, data_dir, tmp_path, monkeypatch):
    no_mirrors(monkeypatch, tmp_path)
    folder = gunzip_dataset(data_dir, tmp_path / "mixed", names=list(FILES)[1:])
    shutil.copy(data_dir / "train-images-idx3-ubyte.gz", folder)
    (folder / "train-images-idx3-ubyte").write_bytes(b"a stale partial gunzip")  # .gz is read
    loaded = load_fashion_mnist(folder)
    assert torch.equal(loaded.train_images, data.train_images)
    assert list(loaded.md5) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte",
                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert loaded.md5["train-images-idx3-ubyte.gz"] == FILES["train-images-idx3-ubyte.gz"]


def test_wrong_unpacked_file_is_a_checksum_error(data_dir, tmp_path, monkeypatch):
    no_mirrors(monkeypatch, tmp_path)
    folder = gunzip_dataset(data_dir, tmp_path / "unpacked")
    target = folder / "t10k-labels-idx1-ubyte"
    labels = bytearray(target.read_bytes())
    labels[100] = (labels[100] + 1) % 10  # still well-formed, but not the original
    target.write_bytes(bytes(labels))
    result = run_main("data", "--data-dir", str(folder))
    assert_one_line_error(result, f"{target}: checksum mismatch", fm.UNPACKED_FILES[target.name], status=1)
    assert target.read_bytes() == bytes(labels)  # never overwritten
    assert not (folder / "t10k-labels-idx1-ubyte.gz").exists()


def test_train_subset_larger_than_what_val_size_leaves():
    result = run_main("train", "basic_cnn", "--set", "data.val_size=59990", "--train-subset", "500", "--dry-run")
    assert_one_line_error(result, "data.train_subset 500 is larger than the 10 training images left "
                          "after data.val_size 59990", status=2)


@pytest.mark.parametrize("val_size, train_subset, fragment", [
    (59_990, 500, "data.train_subset 500 is larger than the 10 training images left after data.val_size 59990"),
    (5, None, "data.val_size 5 is smaller than the 10 classes"),
    (59_985, 12, "data.train_subset 12 leaves out only 3 of the 15 training images left after data.val_size 59985"),
    (1_000, 5, "data.train_subset 5 is smaller than the 10 classes"),
    (59_999, None, "data.val_size 59999 leaves only 1 of the 60,000 training images"),
])
def test_split_sizes_that_cannot_work_say_why(val_size, train_subset, fragment):
    labels = torch.arange(10).repeat_interleave(6000)
    with pytest.raises(UsageError) as err:
        stratified_split(labels, val_size, seed=0, train_subset=train_subset)
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_subset_sizes_that_cannot_work_say_why():
    test_labels = torch.arange(10).repeat_interleave(1000)
    with pytest.raises(UsageError, match="data.test_subset 9995 leaves out only 5 of the 10,000 images"):
        fm.stratified_subset(test_labels, 9995, 0, "data.test_subset")
    uneven = torch.tensor([0] * 30 + [1])  # one image of class 1: no stratified draw of 15
    with pytest.raises(UsageError, match="data.train_subset 15: cannot draw a class-stratified subset"):
        fm.stratified_subset(uneven, 15, 0, "data.train_subset")


def test_split_size_limits_that_work():
    labels = torch.arange(10).repeat_interleave(6000)
    train, val = stratified_split(labels, 59_990, seed=0, train_subset=10)  # all that is left
    assert torch.bincount(labels[train]).tolist() == [1] * 10 and len(val) == 59_990
    train, val = stratified_split(labels, 10, seed=0, train_subset=59_980)
    assert torch.bincount(labels[val]).tolist() == [1] * 10 and len(train) == 59_980

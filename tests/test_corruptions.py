"""The corruptions of ``fashionbench robustness``: each changes an image, stays in range
and changes it more at each severity; a seed gives the same bytes; the cache makes a
set once; and, where ``imagecorruptions`` (ImageNet-C's code, packaged) has the same
corruption, ours matches it given the same parameters: the same image for the
deterministic ones, the same mean change for the random ones."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fashionbench import corruptions as C
from fashionbench.errors import UsageError

from conftest import run_main


def garments(n: int = 24, seed: int = 0) -> torch.Tensor:
    """Synthetic 28x28 uint8 images like Fashion-MNIST's: a light, textured shape on black."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images = []
    for _ in range(n):
        cy, cx = 14 + 4 * torch.rand(2, generator=g) - 2
        ry, rx = 6 + 6 * torch.rand(2, generator=g)
        inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
        texture = 120 + 100 * torch.rand(28, 28, generator=g)
        images.append(torch.where(inside, texture, torch.zeros(())))
    return torch.stack(images).round().to(torch.uint8)


IMAGES = garments()


def mean_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().mean().item()


# -- every corruption ----------------------------------------------------------------------

@pytest.mark.parametrize("name", C.NAMES)
def test_a_corruption_changes_the_image_more_at_each_severity_within_range(name):
    changes = []
    for level in C.LEVELS:
        out = C.corrupt(IMAGES, name, level, seed=0)
        assert out.dtype == torch.uint8 and out.shape == IMAGES.shape
        raw = C.CORRUPTIONS[name].apply(IMAGES.double() / 255, C.SEVERITIES[name][level - 1],
                                        torch.Generator().manual_seed(0))
        assert raw.min() >= 0 and raw.max() <= 1, f"{name} {level}: outside [0, 1]"
        changes.append(mean_change(out, IMAGES))
    assert changes[0] > 0, f"{name} at severity 1 leaves the images as they were"
    assert all(a < b for a, b in zip(changes, changes[1:])), f"{name}: mean change per severity {changes}"


def test_the_table_has_five_parameters_for_every_corruption_and_at_least_fifteen():
    assert len(C.NAMES) >= 15 and set(C.SEVERITIES) == set(C.CORRUPTIONS)
    assert all(len(params) == len(C.LEVELS) == 5 for params in C.SEVERITIES.values())
    assert {c.family for c in C.CORRUPTIONS.values()} >= {"noise", "blur", "weather", "digital", "geometric"}


@pytest.mark.parametrize("name", C.NAMES)
def test_a_seed_gives_the_same_bytes_and_another_seed_other_ones(name):
    first = C.corrupt(IMAGES, name, 3, seed=7)
    assert torch.equal(first, C.corrupt(IMAGES.clone(), name, 3, seed=7))
    other = C.corrupt(IMAGES, name, 3, seed=8)
    assert torch.equal(first, other) != C.CORRUPTIONS[name].random, \
        f"{name}: {'random but the seed changes nothing' if C.CORRUPTIONS[name].random else 'deterministic'}"


def test_images_with_a_channel_axis_keep_it():
    out = C.corrupt(IMAGES[:, None], "gaussian_noise", 2, seed=0)
    assert out.shape == (len(IMAGES), 1, 28, 28)
    assert torch.equal(out[:, 0], C.corrupt(IMAGES, "gaussian_noise", 2, seed=0))


def test_a_wrong_name_severity_or_dtype_is_one_line():
    with pytest.raises(UsageError, match=r"unknown corruption\(s\) frost; known: gaussian_noise, "):
        C.check_names(["gaussian_noise", "frost"])
    for bad in ([0], [6], [2.0], [True], []):
        with pytest.raises(UsageError, match="severit"):
            C.check_levels(bad)
    assert C.check_levels([5, 1, 5]) == [1, 5] and C.check_names(["rotate", "fog"]) == ["fog", "rotate"]
    with pytest.raises(UsageError, match="uint8"):
        C.corrupt(IMAGES.float(), "fog", 1)


# -- the cache -----------------------------------------------------------------------------

def test_the_cache_makes_a_set_once_and_makes_a_damaged_file_again(tmp_path, capsys):
    cache = C.CorruptionCache(tmp_path / "cache")
    images = IMAGES[:8, None]
    made = cache.images(images, "abc", "shot_noise", 2, 0)
    path = cache.path("shot_noise", 2, 0, "abc")
    assert cache.made == 1 and path.exists() and np.array_equal(made, C.corrupt(images, "shot_noise", 2, 0).numpy())
    stamp = path.stat().st_mtime_ns
    again = C.CorruptionCache(tmp_path / "cache")  # a later command's
    assert np.array_equal(again.images(images, "abc", "shot_noise", 2, 0), made)
    assert again.made == 0 and path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    path.write_bytes(b"not an npz")
    assert np.array_equal(again.images(images, "abc", "shot_noise", 2, 0), made) and again.made == 1
    assert f"{path} cannot be read" in capsys.readouterr().err
    fewer = images[:4]  # other images under the same name: the file is made again for them
    assert np.array_equal(again.images(fewer, "abc", "shot_noise", 2, 0), C.corrupt(fewer, "shot_noise", 2, 0).numpy())
    assert "holds other images; making it again" in capsys.readouterr().err


def test_the_cache_folder_is_the_option_else_the_variable_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "env"))
    assert C.CorruptionCache().folder == tmp_path / "env"
    assert C.CorruptionCache(tmp_path / "opt").folder == tmp_path / "opt"
    monkeypatch.delenv(C.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert C.CorruptionCache().folder == tmp_path / "xdg" / "fashionbench" / "corruptions"


# -- against imagecorruptions (ImageNet-C's code) -----------------------------------------------

# imagecorruptions' own parameters (ImageNet-C's), given to ours for the comparison.
IMAGENET_C = {
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
}
# At most this share of pixels may differ, by one grey level: where floating point puts a
# value a hair either side of a level, truncation goes either way (brightness: ImageNet-C's
# x / 255 + 0.2, times 255, lands just under a whole level on a few values; ours on it).
SAME_IMAGE = {"brightness": 0.05, "contrast": 0.01, "jpeg_compression": 0.0, "pixelate": 0.0,
              "gaussian_blur": 0.0, "defocus_blur": 0.03, "zoom_blur": 0.01, "motion_blur": 0.01}
# The mean absolute change per image within this share of imagecorruptions'.
SAME_CHANGE = {"gaussian_noise": 0.05, "shot_noise": 0.05, "impulse_noise": 0.05, "speckle_noise": 0.05,
               "fog": 0.05, "snow": 0.05, "glass_blur": 0.15}


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("imagecorruptions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagecorruptions.corruptions as reference
    return reference


@pytest.fixture(scope="module")
def test_images(data) -> torch.Tensor:
    return data.test_images[:200, 0]


def theirs(reference, name: str, images: torch.Tensor, severity: int, seed: int = 0) -> np.ndarray:
    """imagecorruptions' ``name`` at ``severity`` on each image, as ``corrupt`` gives it
    (uint8, truncated), called directly: its ``corrupt`` refuses images under 32 pixels.
    Gaussian and motion blur take the image in three channels (their grayscale paths blur
    one axis, or fail), the others in one."""
    rgb = name in ("gaussian_blur", "motion_blur")
    out = []
    for k, image in enumerate(images.numpy()):
        np.random.seed(seed + k)
        pil = Image.fromarray(np.stack([image] * 3, -1) if rgb else image)
        result = np.uint8(getattr(reference, name)(pil, severity))
        out.append(result[..., 0] if result.ndim == 3 else result)
    return np.stack(out)


def ours(name: str, images: torch.Tensor, param, gen: torch.Generator | None = None) -> np.ndarray:
    out = C.CORRUPTIONS[name].apply(images.double() / 255, param, gen or torch.Generator().manual_seed(0))
    return torch.floor(out.clamp(0, 1) * 255 + 1e-6).to(torch.uint8).numpy()


@pytest.mark.parametrize("name", sorted(set(SAME_IMAGE) - {"motion_blur"}))
def test_a_deterministic_corruption_is_imagecorruptions_own(name, reference, test_images):
    for severity, param in enumerate(IMAGENET_C[name], 1):
        diff = np.abs(ours(name, test_images, param).astype(int) - theirs(reference, name, test_images, severity))
        assert diff.max() <= 1 and (diff > 0).mean() <= SAME_IMAGE[name], \
            f"{name} {severity}: {(diff > 0).mean():.2%} of pixels differ, by up to {diff.max()}"


def test_motion_blur_at_imagecorruptions_angles_is_its_own(reference, test_images):
    for severity, (radius, sigma) in enumerate(IMAGENET_C["motion_blur"], 1):
        angles = []
        for k in range(len(test_images)):  # the angle its call draws first from the same seed
            np.random.seed(k)
            angles.append(np.random.uniform(-45, 45))
        mine = C.motion_kernel_blur(test_images.double() / 255, radius, sigma, torch.tensor(angles))
        mine = torch.floor(mine.clamp(0, 1) * 255 + 1e-6).to(torch.uint8).numpy()
        diff = np.abs(mine.astype(int) - theirs(reference, "motion_blur", test_images, severity))
        assert diff.max() <= 1 and (diff > 0).mean() <= SAME_IMAGE["motion_blur"], f"motion_blur {severity}"


@pytest.mark.parametrize("name", sorted(SAME_CHANGE))
def test_a_random_corruption_changes_images_as_much_as_imagecorruptions(name, reference, test_images):
    clean = test_images.numpy().astype(float)
    for severity, param in enumerate(IMAGENET_C[name], 1):
        mine = np.abs(ours(name, test_images, param) - clean).mean()
        its = np.abs(theirs(reference, name, test_images, severity, seed=1000 * severity) - clean).mean()
        assert abs(mine / its - 1) <= SAME_CHANGE[name], f"{name} {severity}: mean change {mine:.2f} against {its:.2f}"


# -- the command, end to end -------------------------------------------------------------------

def test_robustness_writes_its_record_reuses_the_cache_and_feeds_the_report(tiny_run, data_dir, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    cache = tmp_path / "corruptions"
    args = ["robustness", str(run), "--types", "gaussian_noise,contrast", "--severities", "1,5",
            "--cache-dir", str(cache), "--data-dir", str(data_dir)]
    result = run_main(*args)
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "robustness.json").read_text())
    assert set(record) >= {"clean_acc", "mca", "relative_drop", "accuracy", "corruption_acc", "complete", "seed",
                           "corruptions_version", "test_images", "severities", "model", "weights"}
    assert list(record["accuracy"]) == ["gaussian_noise", "contrast"]
    assert all(list(v) == ["1", "5"] and all(0 <= a <= 1 for a in v.values()) for v in record["accuracy"].values())
    values = [a for v in record["accuracy"].values() for a in v.values()]
    assert record["mca"] == pytest.approx(np.mean(values)) and record["complete"] is False
    assert record["relative_drop"] == pytest.approx((record["clean_acc"] - record["mca"]) / record["clean_acc"])
    summary = json.loads((run / "summary.json").read_text())
    assert record["test_images"] == 2000 and record["clean_acc"] == pytest.approx(summary["test_acc"], abs=2e-3)
    assert record["accuracy"]["contrast"]["5"] < record["accuracy"]["contrast"]["1"]
    assert "gaussian_noise" in result.stdout and "mCA" in result.stdout
    assert str(run / "robustness.json") in result.stdout
    files = sorted(cache.iterdir())
    assert len(files) == 4 and all(f.suffix == ".npz" for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    # Again, and one more corruption: the four sets are read back, not made; the record grows.
    result = run_main(*args[:3], "gaussian_noise,contrast,rotate", *args[4:])
    assert result.returncode == 0, result.stderr
    assert all(f.stat().st_mtime_ns == stamp for f, stamp in stamps.items()) and len(list(cache.iterdir())) == 6
    assert list(json.loads((run / "robustness.json").read_text())["accuracy"]) == ["gaussian_noise", "contrast",
                                                                                    "rotate"]
    result = run_main("report", str(run), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert (run / "report" / "robustness.png").stat().st_size > 1000
    assert "Accuracy under corruptions" in (run / "report" / "report.html").read_text()
    line = json.loads((run / "report" / "report.json").read_text())["headline"]["accuracy under corruptions"]
    record = json.loads((run / "robustness.json").read_text())
    assert line.startswith(f"{100 * record['mca']:.2f}% mean over part of the corruptions"), line


def test_an_ensemble_is_measured_by_its_own_combination(tiny_run, data, tmp_path, monkeypatch):
    import fashionbench as fb

    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "corruptions"))
    other = tmp_path / "copy"
    shutil.copytree(tiny_run, other)
    ensemble = fb.ensemble([tiny_run, other], "weighted", out=tmp_path, name="ens", data=data)
    record = fb.robustness(ensemble, types=["stripe"], severities=[3], data=data)
    assert record["kind"] == "ensemble" and record["clean_acc"] == pytest.approx(ensemble.summary.test_acc)
    assert os.path.exists(ensemble.robustness_path)


@pytest.mark.parametrize("args, message", [
    (["--types", "gaussian_noise,frost"], "argument --types: unknown corruption(s) frost; known: gaussian_noise"),
    (["--severities", "0,2"], "argument --severities: must be at least 1, got 0"),
    (["--severities", "6"], "argument --severities: must be between 1 and 5, got 6"),
    (["--seed", "-1"], "argument --seed: must be at least 0"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
])
def test_a_bad_option_is_one_line(args, message, tmp_path):
    result = run_main("robustness", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_finished_run_is_one_line(tmp_path):
    result = run_main("robustness", str(tmp_path), "--types", "fog")
    assert result.returncode == 1 and "not a run folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_api_checks_its_values_before_any_data_loads(tmp_path):
    import fashionbench as fb

    for kwargs, message in (({"types": ["nope"]}, "unknown corruption"), ({"severities": [9]}, "severities"),
                            ({"seed": -2}, "seed"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(UsageError, match=message):
            fb.robustness(tmp_path, **kwargs)

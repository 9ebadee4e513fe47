"""fashionbench predict: image files are made into Fashion-MNIST images the way the
dataset's own were, and predict as the dataset's tensors do."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fashionbench import inference
from fashionbench.data import CLASSES
from fashionbench.rundir import finished
from fashionbench.tasks.predict import read_image, to_fashion_mnist

from conftest import run_cli, run_main

N = 2000  # test images: enough to measure agreement to a fraction of a percent, in seconds


@pytest.fixture(scope="module")
def model(tiny_run):
    return inference.load_model(finished(tiny_run))


@pytest.fixture(scope="module")
def test_images(data) -> np.ndarray:
    return data.test_images[:N, 0].numpy()


@pytest.fixture(scope="module")
def reference(model, data) -> torch.Tensor:
    """The tensor path's probabilities for the first N test images."""
    images = data.test_images[:N].to(model.device)
    return inference.probabilities(inference.predict(model.model, images, model.precision, model.cfg.channels_last),
                                   model.cfg.head, model.temperature)


def write_images(folder, images, enlarge: int = 1, invert: bool = False) -> list:
    """Each uint8 (28, 28) image as a PNG: as it is, or RGB, enlarged by repeating pixels."""
    folder.mkdir()
    paths = []
    for i, pixels in enumerate(images):
        image = Image.fromarray(255 - pixels if invert else pixels)
        if enlarge > 1:
            image = image.convert("RGB").resize((28 * enlarge, 28 * enlarge), Image.Resampling.NEAREST)
        paths.append(folder / f"{i:05d}.png")
        image.save(paths[-1])
    return paths


def probabilities_of(model, paths) -> tuple[np.ndarray, torch.Tensor]:
    """The converted images and their probabilities, batched as inference.predict batches."""
    images = torch.from_numpy(np.stack([read_image(p) for p in paths])[:, None])
    probs = torch.cat([model.probabilities(images[i:i + inference.EVAL_BATCH])
                       for i in range(0, len(images), inference.EVAL_BATCH)])
    return images[:, 0].numpy(), probs


@pytest.mark.parametrize("invert", [False, True], ids=["as-is", "inverted"])
def test_28x28_files_predict_exactly_as_the_dataset(model, test_images, reference, tmp_path, invert):
    images, probs = probabilities_of(model, write_images(tmp_path / "png", test_images, invert=invert))
    assert np.array_equal(images, test_images)
    assert torch.equal(probs.argmax(1), reference.argmax(1))
    torch.testing.assert_close(probs, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("invert", [False, True], ids=["as-is", "inverted"])
def test_enlarged_rgb_files_agree_with_the_dataset(model, test_images, reference, tmp_path, invert):
    _, probs = probabilities_of(model, write_images(tmp_path / "png", test_images, enlarge=4, invert=invert))
    agreement = (probs.argmax(1) == reference.argmax(1)).float().mean().item()
    print(f"4x RGB{' inverted' if invert else ''}: argmax agreement {agreement:.4f} on {N} test images")
    assert agreement >= 0.99


def test_conversion_trims_resizes_centres_and_inverts():
    # A grey garment 20 wide and 40 tall in a transparent 90x50 image: composited on white, trimmed to
    # the garment, its long side made 28 (so 14 wide, centred), inverted to light on black.
    image = Image.new("RGBA", (90, 50), (0, 0, 0, 0))
    image.paste((100, 100, 100, 255), (30, 5, 50, 45))
    pixels = to_fashion_mnist(image)
    expected = np.zeros((28, 28), np.uint8)
    expected[:, 7:21] = 155
    assert np.array_equal(pixels, expected)
    assert np.array_equal(to_fashion_mnist(image, invert="no"), 255 - expected)


def test_16_bit_images_are_scaled_not_clipped(test_images):
    image = Image.fromarray(test_images[0].astype(np.uint16) * 257)
    assert image.mode == "I;16"
    assert np.array_equal(to_fashion_mnist(image), test_images[0])


def test_cli_reports_an_unreadable_file_and_predicts_the_rest(tiny_run, test_images, tmp_path):
    folder = tmp_path / "photos"
    good = write_images(folder, test_images[:3])
    (folder / "broken.png").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("not an image extension: skipped")
    (folder / ".hidden.png").write_bytes(b"hidden: skipped")
    result = run_cli("predict", str(tiny_run), str(folder))
    assert result.returncode == 1, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"fashionbench: error: {folder / 'broken.png'}: cannot read as an image (")
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [str(p) for p in good]
    assert all(sum(name in line for name in CLASSES) >= 3 for line in lines)


def test_cli_reads_other_formats_and_writes_json(tiny_run, test_images, tmp_path):
    garment = Image.fromarray(255 - test_images[1]).resize((57, 75))  # dark on white, odd size
    jpeg, rgba, deep = tmp_path / "photo.jpg", tmp_path / "cutout.png", tmp_path / "deep.png"
    garment.convert("RGB").save(jpeg, quality=90)
    cutout = garment.convert("RGBA")
    cutout.putalpha(Image.fromarray(np.where(np.asarray(garment) < 250, 255, 0).astype(np.uint8)))
    cutout.save(rgba)
    Image.fromarray(np.asarray(garment, dtype=np.uint16) * 257).save(deep)
    missing = tmp_path / "missing.png"
    result = run_cli("predict", str(tiny_run), str(jpeg), str(missing), str(rgba), str(deep),
                     "--json", "--top-k", "2", "--tta", "flip")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"fashionbench: error: {missing}: no such file or folder"]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(jpeg), str(rgba), str(deep)]
    for row in rows:
        assert [t["class"] for t in row["top_k"]] == [CLASSES[t["index"]] for t in row["top_k"]]
        probabilities = [t["probability"] for t in row["top_k"]]
        assert len(probabilities) == 2 and 1 >= probabilities[0] >= probabilities[1] >= 0


def test_cli_refuses_a_top_k_out_of_range(tiny_run, tmp_path):
    result = run_main("predict", str(tiny_run), str(tmp_path), "--top-k", "11")
    assert result.returncode == 2
    assert result.stderr.strip() == "fashionbench: error: --top-k must be between 1 and 10, not 11"
    result = run_main("predict", str(tiny_run), str(tmp_path), "--top-k", "0")  # caught as it is read
    assert result.returncode == 2
    assert result.stderr.strip() == ("fashionbench predict: error: argument --top-k: must be at least 1, "
                                     "got 0 (see fashionbench predict --help)")

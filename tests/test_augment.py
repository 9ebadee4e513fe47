import torch

from fashionbench.augment import alternating_flips, augment, random_erase, random_flip, random_translate, random_zoom
from fashionbench.config import AugmentConfig
from fashionbench.training import Trainer

from conftest import small_config


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=64, seed=1):
    return torch.rand(n, 1, 28, 28, generator=gen(seed))


def test_flip_rate_close_to_p_and_flips_exactly():
    x = images(20_000)
    out = random_flip(x, 0.1, gen())
    flipped = (out != x).flatten(1).any(1)
    assert torch.equal(out[flipped], x[flipped].flip(-1))
    assert torch.equal(out[~flipped], x[~flipped])
    # Binomial(20000, 0.1): sd 0.0021, so 0.01 is about five sd.
    assert abs(flipped.float().mean().item() - 0.1) < 0.01


def test_everything_off_is_the_identity():
    x = images()
    off = AugmentConfig(flip=0, zoom=0, translate=0, erase=0)
    assert augment(x, off, gen()) is x


def test_zoom_of_one_is_identity_and_zoom_scales_about_the_centre():
    x = images()
    assert torch.allclose(random_zoom(x, 1e-9, gen()), x, atol=1e-5)
    square = torch.zeros(2000, 1, 28, 28)
    square[:, :, 10:18, 10:18] = 1  # 64 bright pixels, centred
    out = random_zoom(square, 0.25, gen())
    mass = out.sum((1, 2, 3))
    # Area scales with the square of the zoom factor s ~ U(0.75, 1.25).
    assert 64 * 0.75 ** 2 - 1 <= mass.min() and mass.max() <= 64 * 1.25 ** 2 + 1
    assert mass.std() > 5  # a different factor per sample
    centre = (out * torch.arange(28.0)[None, None, None, :]).sum((1, 2, 3)) / mass
    assert torch.allclose(centre, torch.full_like(centre, 13.5), atol=1e-3)


def test_translate_is_a_shifted_copy_within_range():
    x = images(200)
    out = random_translate(x, 2, gen())
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 28, dx:dx + 28])]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) == 25  # every offset occurs
    assert torch.equal(random_translate(x, 0, gen()), x)


def test_erase_blanks_one_rectangle_with_probability_p():
    x = torch.ones(4000, 1, 28, 28)
    out = random_erase(x, 0.5, gen())
    erased = (out == 0).flatten(1)
    hit = erased.any(1)
    assert abs(hit.float().mean().item() - 0.5) < 0.04
    area = erased.sum(1)[hit].float() / 784
    assert area.min() > 0 and area.max() <= 0.25 * 1.3  # rounding of the sides
    rows = (out[hit] == 0).any(-1).squeeze(1).sum(1)
    cols = (out[hit] == 0).any(-2).squeeze(1).sum(1)
    assert torch.equal(rows * cols, erased.sum(1)[hit])  # a solid rectangle


def test_augment_is_seeded_and_vectorized_over_the_batch():
    x = images(256)
    cfg = AugmentConfig(flip=0.5, zoom=0.1, translate=2, erase=0.5)
    a, b = augment(x, cfg, gen(7)), augment(x, cfg, gen(7))
    assert torch.equal(a, b)
    assert a.shape == x.shape and not torch.equal(a, augment(x, cfg, gen(8)))


def test_alternating_flips_are_seeded_and_mirror_exactly_the_images_named_drawing_nothing():
    flips = alternating_flips(20_000, 3, torch.device("cpu"))
    assert torch.equal(flips, alternating_flips(20_000, 3, torch.device("cpu")))
    assert not torch.equal(flips, alternating_flips(20_000, 4, torch.device("cpu")))
    assert abs(flips.float().mean().item() - 0.5) < 0.02  # Binomial(20000, 0.5): sd 0.0035
    x, g = images(), gen()
    before = g.get_state()
    named = flips[:len(x)]
    out = augment(x, AugmentConfig(flip=0.1, zoom=0, translate=0, erase=0, flip_alternate=True), g, named)
    assert torch.equal(out[named], x[named].flip(-1)) and torch.equal(out[~named], x[~named])
    assert torch.equal(g.get_state(), before)  # the run's generator untouched: flip's probability unused


def test_a_run_with_alternating_flips_mirrors_each_image_in_every_other_epoch(data, monkeypatch, tmp_path):
    """Every training image is seen once an epoch (500 images, 10 batches of 50): its flip
    in the second epoch is the opposite of its flip in the first."""
    cfg = small_config("data.train_subset=500", "data.val_size=200", "data.test_subset=200", "batch_size=50",
                       "augment.flip_alternate=true", "augment.zoom=0", "swa.enabled=false")
    trainer = Trainer(cfg, data, tmp_path / "run")
    seen: list[dict[bytes, list[bool]]] = [{}, {}]
    step = trainer.train_step

    def recording(images, labels, flips=None):
        for image, flip in zip(images, flips):
            seen[trainer.epoch].setdefault(image.numpy().tobytes(), []).append(bool(flip))
        return step(images, labels, flips)

    monkeypatch.setattr(trainer, "train_step", recording)
    trainer.fit()
    assert sum(map(len, seen[0].values())) == sum(map(len, seen[1].values())) == 500
    unique = [image for image, flips in seen[0].items() if len(flips) == 1]  # an image the subset holds twice aside
    assert len(unique) > 480
    assert all(seen[1][image] == [not seen[0][image][0]] for image in unique)
    assert 0.35 < sum(seen[0][image][0] for image in unique) / len(unique) < 0.65

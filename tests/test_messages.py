"""Messages that say what is wrong: an ensemble folder given where a trained run is
needed, a --name that is not a folder name, predict's inputs, an empty or malformed
--config, a damaged summary.json, images with nothing to classify or too large to read.
docs/reliability.md lists what these tests hold the code to."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

import fashionbench as fb
from fashionbench.errors import FashionbenchError, UsageError
from fashionbench.tasks.predict import read_image

from conftest import run_main
from test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def ensemble_dir(tiny_run, data, tmp_path_factory):
    """A real ensemble folder (summary.json and report/, no config.yaml, no model.pt)."""
    out = tmp_path_factory.mktemp("ensembles")
    return fb.ensemble([tiny_run], out=out, name="ens", data=data).path


def copy_of(run, tmp_path, name="copy"):
    """A copy of a finished run, to damage."""
    return shutil.copytree(run, tmp_path / name)


def image_file(tmp_path, pixels: np.ndarray, name="image.png"):
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


# -- an ensemble folder where a trained run is needed ------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "report", "predict", "export", "audit", "specialists"])
def test_an_ensemble_folder_says_what_it_is_and_which_commands_take_it(ensemble_dir, tmp_path, command):
    extra = [str(tmp_path / "shoe.png")] if command == "predict" else []
    result = run_main(command, str(ensemble_dir), *extra)
    assert_one_line_error(result, str(ensemble_dir), "an ensemble", "no model of its own",
                          "fashionbench table", status=1)
    assert "no config.yaml" not in result.stderr


def test_a_specialists_folder_says_what_it_is_too(ensemble_dir, tmp_path):
    # Specialists have no config.yaml or model.pt either: only their summary's kind differs.
    folder = tmp_path / "with-specialists"
    folder.mkdir()
    summary = json.loads((ensemble_dir / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "kind": "specialists"}))
    assert_one_line_error(run_main("evaluate", str(folder)), "is a run with specialists",
                          "no model of its own", "fashionbench table", status=1)


def test_an_ensemble_given_to_the_api_says_what_it_is(ensemble_dir):
    with pytest.raises(FashionbenchError, match="is an ensemble"):
        fb.predict(ensemble_dir, [np.zeros((28, 28), np.uint8)])


# -- --name: a folder name under --out ---------------------------------------------------

@pytest.mark.parametrize("name", ["ABSOLUTE", "", ".", "..", "a/b", "../up"])
@pytest.mark.parametrize("command", [
    ["train", "basic_cnn", "--dry-run"], ["one-vs-all", "basic_cnn", "--dry-run"],
    ["speedrun", "--dry-run"], ["ensemble", "runs/a"], ["specialists", "runs/a"]])
def test_name_is_a_plain_folder_name(tmp_path, command, name):
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    result = run_main(*command, "--out", str(tmp_path / "out"), "--name", name)
    assert_one_line_error(result, "--name", "a folder name", status=2)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "out").exists()


def test_the_api_refuses_a_name_that_is_a_path(tiny_run, tmp_path):
    for name in (str(tmp_path / "elsewhere"), "", "a/b", ".."):
        with pytest.raises(UsageError, match="a folder name"):
            fb.ensemble([tiny_run], out=tmp_path / "out", name=name)
        with pytest.raises(UsageError, match="a folder name"):
            fb.specialists(tiny_run, out=tmp_path / "out", name=name)
    assert not (tmp_path / "elsewhere").exists()


# -- predict's inputs ------------------------------------------------------------------

def test_predict_takes_a_single_path_as_one_image(tiny_run, data, tmp_path):
    path = image_file(tmp_path, data.test_images[0, 0].numpy())
    for single in (str(path), path):
        (prediction,) = fb.predict(tiny_run, single)
        assert prediction.source == str(path)
    assert prediction.label == fb.predict(tiny_run, [path])[0].label


@pytest.mark.parametrize("shape, hint", [((3, 28, 28), "channels first"), ((1, 28, 28), "channels first"),
                                         ((28, 28, 2), ""), ((28,), "[image]"), ((2, 28, 28, 3), "")])
def test_predict_refuses_an_array_of_another_shape_in_one_line(tiny_run, shape, hint):
    with pytest.raises(UsageError) as refused:
        fb.predict(tiny_run, [np.zeros(shape, np.uint8)])
    message = str(refused.value)
    assert "\n" not in message and f"shape {shape}" in message
    assert "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)" in message and hint in message


def test_predict_refuses_an_array_that_is_not_uint8(tiny_run):
    with pytest.raises(UsageError, match="float32.*uint8"):
        fb.predict(tiny_run, [np.zeros((28, 28), np.float32)])


def test_predict_takes_a_channels_last_array_of_one_channel(tiny_run, data):
    image = data.test_images[0, 0].numpy()
    (with_channel,) = fb.predict(tiny_run, [image[:, :, None]])
    assert with_channel.label == fb.predict(tiny_run, [image])[0].label


@pytest.mark.parametrize("pixels", [np.zeros((1, 1), np.uint8), np.full((28, 28), 200, np.uint8),
                                    np.full((300, 200, 3), 255, np.uint8)], ids=["1x1", "blank-28", "white-rgb"])
def test_a_blank_image_is_predicted_with_a_warning(tiny_run, data, capsys, pixels):
    fb.predict(tiny_run, [pixels, data.test_images[0, 0].numpy()])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # the blank one, not the garment
    assert lines[0].startswith("fashionbench: warning: image 0:") and "not meaningful" in lines[0]


def test_predict_cli_warns_about_a_1x1_file(tiny_run, tmp_path):
    path = image_file(tmp_path, np.full((1, 1), 77, np.uint8), "dot.png")
    result = run_main("predict", str(tiny_run), str(path))
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"fashionbench: warning: {path}:") and "1x1" in line and "not meaningful" in line


def test_an_image_over_the_pixel_bound_is_refused_in_our_words(tmp_path, monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that: both are one
    # refusal naming the bound (a small bound stands in for the 89 million pixels).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for side in (40, 50):  # 1,600 pixels: Pillow's warning; 2,500: its error
        path = image_file(tmp_path, np.zeros((side, side), np.uint8), f"big{side}.png")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(FashionbenchError) as refused:
                read_image(path)
        assert not caught, [str(w.message) for w in caught]
        assert str(refused.value).startswith(f"{path}: more than 1,000 pixels, refused")


# -- tables ----------------------------------------------------------------------------

def test_a_leaderboard_of_no_runs_says_so():
    with pytest.raises(UsageError, match="^no runs given"):
        fb.leaderboard([])


# -- --config ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [("", "is empty"), ("# only a comment\n", "is empty"),
                                            ("epochs: [1,\n", "invalid YAML"), ("- 1\n- 2\n", "a mapping")])
def test_a_config_that_is_not_a_config_is_a_usage_error(tmp_path, text, fragment):
    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    result = run_main("train", "basic_cnn", "--config", str(config), "--dry-run", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, str(config), fragment, status=2)
    with pytest.raises(UsageError, match=fragment):
        fb.resolve_config("basic_cnn", config)


def test_a_damaged_config_yaml_in_a_run_folder_is_not_a_usage_error(tiny_run, tmp_path):
    run = copy_of(tiny_run, tmp_path)
    (run / "config.yaml").write_text("epochs: [1,\n")
    assert_one_line_error(run_main("evaluate", str(run)), f"{run}/config.yaml", "invalid YAML", status=1)
    (run / "config.yaml").write_text("")
    assert_one_line_error(run_main("evaluate", str(run)), f"{run}/config.yaml", "is empty", status=1)


# -- a damaged summary.json -------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "export", "audit"])
def test_every_command_refuses_a_run_whose_summary_is_damaged(tiny_run, tmp_path, command):
    run = copy_of(tiny_run, tmp_path)
    (run / "summary.json").write_text('{"model": "basic_cnn", ')
    extra = [str(image_file(tmp_path, np.zeros((28, 28), np.uint8)))] if command == "predict" else []
    result = run_main(command, str(run), *extra)
    assert_one_line_error(result, f"{run}/summary.json", "not valid JSON", status=1)
    with pytest.raises(FashionbenchError, match="not valid JSON"):
        fb.predict(run, [np.zeros((28, 28), np.uint8)])

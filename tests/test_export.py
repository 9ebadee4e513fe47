"""fashionbench export: the ONNX and TorchScript files against the run's own model in torch,
on the real test set, and the serving snippet of docs/usage.md run as written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from fashionbench import __version__, runs
from fashionbench.cli import main
from fashionbench.config import load_config, parse_override
from fashionbench.data import CLASSES
from fashionbench.inference import load_model, probabilities
from fashionbench.rundir import finished
from fashionbench.splits import class_names, normalize, to_float
from fashionbench.tasks.export import INPUT_CONTRACT

from conftest import run_cli

USAGE_DOC = Path(__file__).resolve().parents[1] / "docs" / "usage.md"
SNIPPET_MARKER = "<!-- onnx-snippet -->"


@pytest.fixture(scope="module")
def torch_probabilities(tiny_run, data) -> torch.Tensor:
    """The run's model in torch on all test images: fp32, eval mode, the training normalization,
    its logits divided by the run's temperature."""
    loaded = load_model(finished(tiny_run), device="cpu")
    with torch.no_grad():
        logits = torch.cat([loaded.model(normalize(to_float(batch), loaded.cfg.channels_last))
                            for batch in data.test_images.split(1000)])
    return probabilities(logits, loaded.cfg.head, loaded.temperature)


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """tiny_run exported through the CLI: the file and what the command printed."""
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    result = run_cli("export", str(tiny_run), "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path, result.stdout


@pytest.fixture(scope="module")
def session(onnx_export):
    return ort.InferenceSession(str(onnx_export[0]), providers=["CPUExecutionProvider"])


def test_onnx_matches_torch_on_the_whole_test_set(onnx_export, session, torch_probabilities, data):
    path, stdout = onnx_export
    assert f"wrote {path} (" in stdout and " MB, ONNX opset 18)" in stdout
    assert INPUT_CONTRACT in stdout
    exported = session.run(["probabilities"], {"pixels": data.test_images.numpy().astype(np.float32)})[0]
    expected = torch_probabilities.numpy()
    agreement = float((exported.argmax(1) == expected.argmax(1)).mean())
    difference = float(np.abs(exported - expected).max())
    print(f"onnxruntime vs torch on {len(expected):,} test images: argmax agreement {agreement:.4%}, "
          f"max probability difference {difference:.2e}")
    assert agreement >= 0.999
    assert difference <= 1e-3


def test_onnx_metadata_describes_the_run(tiny_run, session):
    meta = session.get_modelmeta().custom_metadata_map
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert json.loads(meta["class_names"]) == list(CLASSES)
    assert meta["model"] == summary["model"] == "basic_cnn"
    assert meta["weights"] == summary["weights"]
    assert float(meta["val_acc"]) == summary["val_acc"]
    assert float(meta["test_acc"]) == summary["test_acc"]
    assert meta["git_commit"] == (summary.get("git_commit") or runs.git_commit() or "unknown")
    assert meta["input"] == INPUT_CONTRACT
    assert meta["fashionbench_version"] == __version__
    # Its probabilities are temperature-scaled, at the temperature the run fitted on validation.
    assert json.loads(meta["temperature"]) == summary["temperature_scaling"]["temperature"] != 1.0


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_batch_size_is_dynamic(session, torch_probabilities, data, batch):
    assert session.get_inputs()[0].shape == ["N", 1, 28, 28]
    pixels = data.test_images[:batch].numpy().astype(np.float32)
    logits, probs = session.run(["logits", "probabilities"], {"pixels": pixels})
    assert logits.shape == probs.shape == (batch, len(CLASSES))
    assert np.abs(probs - torch_probabilities[:batch].numpy()).max() <= 1e-3
    temperature = float(session.get_modelmeta().custom_metadata_map["temperature"])
    assert np.abs(probs - torch.from_numpy(logits / temperature).softmax(1).numpy()).max() <= 1e-6


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_export_matches_torch(tiny_run, torch_probabilities, data, tmp_path):
    run_dir = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    result = run_cli("export", str(run_dir), "--format", "torchscript")
    assert result.returncode == 0, result.stderr
    extra_files = {"metadata.json": ""}
    module = torch.jit.load(run_dir / "model.torchscript.pt", _extra_files=extra_files)
    with torch.no_grad():
        probs = torch.cat([module(batch.float())[1] for batch in data.test_images.split(1000)])
    assert (probs - torch_probabilities).abs().max().item() <= 1e-5
    meta = json.loads(extra_files["metadata.json"])
    assert json.loads(meta["class_names"]) == list(CLASSES)
    assert meta["model"] == "basic_cnn"


def docs_snippet(doc: Path) -> str:
    """The ```python block right after the ONNX snippet marker."""
    lines = doc.read_text().splitlines()
    start = lines.index(SNIPPET_MARKER) + 1
    assert lines[start] == "```python", f"{doc}: no ```python block right after {SNIPPET_MARKER}"
    end = lines.index("```", start + 1)
    return "\n".join(lines[start + 1:end]) + "\n"


def test_docs_snippet_serves_the_export_without_torch(onnx_export, torch_probabilities, data, tmp_path):
    (tmp_path / "snippet.py").write_text(docs_snippet(USAGE_DOC))
    shutil.copy(onnx_export[0], tmp_path / "model.onnx")
    Image.fromarray(data.test_images[0, 0].numpy(), mode="L").save(tmp_path / "image.png")
    # -X importtime lists every module the snippet imports, directly or not.
    result = subprocess.run([sys.executable, "-X", "importtime", "snippet.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported
    assert not imported & {"torch", "fashionbench"}

    name, probability = result.stdout.strip().rsplit(" ", 1)
    expected = torch_probabilities[0]
    assert name == CLASSES[int(expected.argmax())]
    assert abs(float(probability) - expected.max().item()) <= 6e-4  # printed to 3 decimals


def test_class_names_of_binary_runs():
    def names(*overrides):
        return class_names(load_config("basic_cnn", overrides=[parse_override(o) for o in overrides]))

    assert names() == list(CLASSES)
    assert names("data.positive_class=6") == ["not Shirt", "Shirt"]  # output 1 is the positive class
    assert names("data.positive_class=6", "data.negative_class=0") == ["T-shirt/top", "Shirt"]


def export_error(capsys, *args: str) -> str:
    """Exit status 1 and one line on stderr, no traceback."""
    assert main(["export", *args]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_refuses_what_is_not_a_finished_run(tiny_run, tmp_path, capsys):
    assert "not a run folder" in export_error(capsys, str(tmp_path))
    shutil.copy(tiny_run / "config.yaml", tmp_path)
    assert "run not finished" in export_error(capsys, str(tmp_path))
    assert list(tmp_path.iterdir()) == [tmp_path / "config.yaml"]


@pytest.mark.parametrize("out, message", [
    ("missing/model.onnx", "no such folder"),
    ("a-file/model.onnx", "no such folder"),
    ("a-folder", "is a folder"),
])
def test_bad_out_gives_one_line_and_no_file(tiny_run, tmp_path, capsys, out, message):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    assert message in export_error(capsys, str(tiny_run), "--out", str(tmp_path / out))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-file", "a-folder"]


def test_unwritable_folder(tiny_run, tmp_path, capsys):
    """/proc takes no new files, not even from root (permission bits would not stop root)."""
    message = export_error(capsys, str(tiny_run), "--out", "/proc/model.onnx")
    assert "not writable" in message or "/proc/model.onnx: cannot write" in message
    assert not Path("/proc/model.onnx").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_failed_write_leaves_no_partial_file(tiny_run, tmp_path, capsys, monkeypatch):
    write_bytes = Path.write_bytes

    def disk_full(path, data):  # half the bytes reach the disk, then the write fails
        write_bytes(path, data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    out = tmp_path / "model.torchscript.pt"
    err = export_error(capsys, str(tiny_run), "--format", "torchscript", "--out", str(out))
    assert f"{out}: cannot write (no space left on device)" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_says_what_to_install(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert "pip install 'fashionbench[export]'" in export_error(capsys, str(tiny_run), "--out",
                                                                 str(tmp_path / "model.onnx"))
    assert list(tmp_path.iterdir()) == []

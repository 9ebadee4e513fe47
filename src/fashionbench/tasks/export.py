"""Export a finished run's model, normalization included, as a file that serves without
fashionbench: ONNX (for onnxruntime and other runtimes) or TorchScript (for torch alone).

The exported graph takes raw pixels, so that a caller needs nothing but the input contract:
``pixels`` float32 (N, 1, 28, 28) with values 0-255, garment light on black, any N; it returns
``logits`` and ``probabilities``, both (N, C). The probabilities are temperature-scaled:
of the logits divided by the run's temperature (its summary's, fitted on validation; 1 for
a run finished before temperature scaling, until ``fashionbench calibrate``), which the file's
metadata gives too; the logits are the network's own. It always computes in fp32, whatever
precision the run trained in.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import runs
from ..config import Config
from ..errors import FashionbenchError
from ..inference import load_model, probabilities
from ..rundir import FinishedRun, Summary
from ..splits import class_names, normalize
from ..version import __version__

# The opset torch's exporter implements natively (torch.onnx's TORCHLIB_OPSET), so it
# converts nothing. Its files are ONNX IR version 10, which onnxruntime loads from 1.18.
ONNX_OPSET = 18
INPUT_CONTRACT = ("pixels: float32 (N, 1, 28, 28), any N, raw values 0-255, garment light on black "
                  "(Fashion-MNIST's convention); normalization is inside the model")
INSTALL_HINT = "pip install 'fashionbench[export]'"


class ServingModel(nn.Module):
    """A run's classifier behind the exported interface: raw pixels in, logits and
    probabilities out."""

    def __init__(self, model: nn.Module, head: str, temperature: float = 1.0):
        super().__init__()
        self.model, self.head, self.temperature = model, head, temperature

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Not splits.to_float: its in-place division would change the caller's tensor.
        logits = self.model(normalize(pixels / 255, channels_last=False))
        return logits, probabilities(logits, self.head, self.temperature)


def metadata(cfg: Config, summary: Summary, weights: str) -> dict[str, str]:
    """What the file says about itself (ONNX metadata_props; TorchScript's metadata.json)."""
    return {
        "class_names": json.dumps(class_names(cfg)),
        "model": summary.model,
        "weights": weights,
        "git_commit": summary.extra.get("git_commit") or runs.git_commit() or "unknown",
        "val_acc": json.dumps(summary.val_acc),
        "test_acc": json.dumps(summary.test_acc),
        "selected_on": summary.selected_on,  # "test": the leaky reference protocol's best epoch
        "input": INPUT_CONTRACT,
        "output": "logits (N, C); probabilities (N, C): "
                  + ("softmax" if cfg.head == "softmax" else "one-vs-all sigmoids normalized to sum to 1")
                  + " of logits / temperature",
        "temperature": json.dumps(summary.temperature),
        "fashionbench_version": __version__,
    }


def example_pixels(batch: int = 4) -> torch.Tensor:
    """A traced example: random pixel values, a batch above 1 so the batch size stays dynamic."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 1, 28, 28), generator=generator).float()


@contextlib.contextmanager
def quiet_exporter():
    """Hide the exporter's log lines and warnings (missing torchvision ops, internal
    deprecations): nothing a user can act on. The result is checked with onnxruntime instead."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_onnx(serving: ServingModel, meta: dict[str, str]) -> bytes:
    try:  # optional dependencies (the [export] extra), loaded only when ONNX is asked for
        import onnx  # noqa: F401  (the exporter's model_proto)
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter imports it only once it runs)
    except ImportError:
        raise FashionbenchError(f"ONNX export needs onnx, onnxscript and onnxruntime: {INSTALL_HINT}") from None
    # The torch.export-based exporter (dynamo=True, which needs onnxscript), torch's default since
    # 2.9: the TorchScript-based one (dynamo=False) still works in 2.13 but warns it will be removed.
    example = example_pixels()
    with quiet_exporter():
        program = torch.onnx.export(serving, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=["pixels"], output_names=["logits", "probabilities"],
                                    dynamic_shapes={"pixels": {0: torch.export.Dim("N")}}, verbose=False)
    program.model.metadata_props.update(meta)
    data = program.model_proto.SerializeToString()

    # Check the file before writing it: a batch size other than the traced one, against torch.
    pixels = example_pixels(batch=7)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    exported = session.run(["probabilities"], {"pixels": pixels.numpy()})[0]
    with torch.no_grad():
        expected = serving(pixels)[1].numpy()
    difference = float(abs(exported - expected).max())
    if difference > 1e-4:
        raise FashionbenchError(f"the exported model disagrees with torch (probabilities differ by up to "
                                f"{difference:.2g}); the torch ONNX exporter mistranslated {meta['model']}")
    return data


def to_torchscript(serving: ServingModel, meta: dict[str, str]) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but its files are what
        # torch.jit.load reads, in any torch; nothing for the user to act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(serving, example_pixels())
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"metadata.json": json.dumps(meta)})
    return buffer.getvalue()


def check_writable(out: Path) -> None:
    """Fail before the (slow) export rather than after it."""
    if out.is_dir():
        raise FashionbenchError(f"{out} is a folder; --out names the file to write")
    if not out.parent.is_dir():
        raise FashionbenchError(f"{out.parent}: no such folder")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise FashionbenchError(f"{out.parent}: not writable")


def export_run(run: FinishedRun, fmt: str, out: Path) -> dict[str, str]:
    """Write ``run``'s model to ``out`` (atomically) and return its metadata."""
    cfg = run.cfg
    check_writable(out)
    loaded = load_model(run, device="cpu")
    meta = metadata(cfg, run.summary, loaded.weights)
    # No autocast anywhere here: the export computes in fp32 whatever the run trained in.
    serving = ServingModel(loaded.model, cfg.head, loaded.temperature).eval()
    data = to_onnx(serving, meta) if fmt == "onnx" else to_torchscript(serving, meta)
    runs.write_bytes(out, data)  # a failed write: one line naming the file and the cause
    return meta

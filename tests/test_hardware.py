from pathlib import Path

import pytest
import torch

from fashionbench import hardware
from fashionbench.errors import FashionbenchError


def test_bf16_detection_reads_the_cpu_flags(monkeypatch):
    flags = {"with": "flags : fpu avx512f avx512_bf16 sse2\n", "amx": "flags : amx_bf16 amx_tile\n",
             "without": "flags : fpu avx512f avx2\n"}
    for name, text in flags.items():
        monkeypatch.setattr(Path, "read_text", lambda self, text=text: text)
        assert hardware.cpu_has_native_bf16() is (name != "without")


def test_precision_auto_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda native=native: native)
        assert hardware.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
        assert hardware.resolve_precision("fp32", cpu) == "fp32"
        assert hardware.resolve_precision("bf16", cpu) == "bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(FashionbenchError, match="CUDA is not available"):
        hardware.resolve_device("cuda")
    assert hardware.resolve_device("auto").type == "cpu"

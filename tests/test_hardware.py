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


def test_the_machine_record_names_the_cpu_its_cores_and_its_bf16(monkeypatch):
    cpuinfo = ("processor : 0\nmodel name : AMD EPYC 9R14\nflags : fpu avx512f avx512_bf16\n"
               "processor : 1\nmodel name : AMD EPYC 9R14\nflags : fpu avx512f avx512_bf16\n")
    monkeypatch.setattr(Path, "read_text", lambda self: cpuinfo)
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.machine() == {"cpu": "AMD EPYC 9R14", "cpu_cores": 2, "cpu_bf16": "avx512_bf16",
                                  "gpu": None, "gpu_driver": None, "cuda": None}
    monkeypatch.setattr(Path, "read_text", lambda self: cpuinfo.replace("avx512_bf16", "amx_bf16 avx512_bf16"))
    assert hardware.cpu_bf16() == "amx"
    monkeypatch.setattr(Path, "read_text", lambda self: cpuinfo.replace(" avx512_bf16", ""))
    assert hardware.cpu_bf16() is None and hardware.device_name(torch.device("cpu")).startswith("cpu (AMD EPYC 9R14, ")


def test_the_command_line_is_recorded_as_typed(monkeypatch):
    from fashionbench.runs import command_line

    monkeypatch.setattr("sys.argv", ["/x/lib/fashionbench/__main__.py", "train", "basic_cnn", "--name", "a b"])
    assert command_line() == "fashionbench train basic_cnn --name 'a b'"
    monkeypatch.setattr("sys.argv", ["/x/.venv/bin/fashionbench", "speedrun"])
    assert command_line() == "fashionbench speedrun"

"""Device and numeric-precision choices, detected rather than assumed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import torch

from .errors import FashionbenchError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FashionbenchError(f"device {name!r} requested but CUDA is not available here")
    return torch.device(name)


def tune_for(device: torch.device) -> None:
    """What makes training fast on ``device`` without changing what it computes. On CUDA,
    cuDNN's benchmark mode: each convolution's algorithm chosen by timing the candidates
    on its first call (a run's shapes are fixed: one batch size, 28x28 images), where the
    default picks by heuristics. The choice can differ between runs, so repeats on a GPU
    may differ in the last bits (fp32 runs already did: docs/benchmarks.md); on the CPU,
    where runs repeat bit for bit, nothing changes."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def cpu_info() -> tuple[str | None, set[str]]:
    """The CPU's model name and its feature flags, from /proc/cpuinfo (None and none
    where there is no such file: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def cpu_bf16() -> str | None:
    """How the CPU multiplies bf16 in hardware: "amx" (AMX tiles), "avx512_bf16", or None."""
    flags = cpu_info()[1]
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AMX or AVX512-BF16).

    Elsewhere oneDNN emulates bf16 and autocast makes training slower, not faster.
    """
    return cpu_bf16() is not None


def gpu_driver() -> str | None:
    """The NVIDIA driver's version, as nvidia-smi says it (None without one)."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.splitlines()[0].strip() if result.returncode == 0 and result.stdout.strip() else None


def cores() -> int:
    """The cores this process may run on (taskset and cpusets count; not CPU quotas)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def machine() -> dict:
    """What a figure was measured on, for the record beside it: the CPU (model, the cores
    this process may use, bf16 in hardware) and, where CUDA is available, the GPU, its
    driver and CUDA's version. The platform string alone is the same on an AMD EPYC and
    an Intel Xeon."""
    record = {"cpu": cpu_info()[0], "cpu_cores": cores(), "cpu_bf16": cpu_bf16(), "gpu": None, "gpu_driver": None,
              "cuda": None}
    if torch.cuda.is_available():
        record |= {"gpu": torch.cuda.get_device_name(), "gpu_driver": gpu_driver(), "cuda": torch.version.cuda}
    return record


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' where the device computes it natively, else 'fp32'."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    threads = f"{n} thread{'s' * (n != 1)}"
    model = cpu_info()[0]
    return f"cpu ({model}, {threads})" if model else f"cpu ({threads})"

"""Device and numeric-precision choices, detected rather than assumed."""

from __future__ import annotations

import contextlib
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


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AMX or AVX512-BF16).

    Elsewhere oneDNN emulates bf16 and autocast makes training slower, not faster.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: stay with fp32
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu ({line.split(':', 1)[1].strip()}, {threads})"
    except OSError:
        pass
    return f"cpu ({threads})"

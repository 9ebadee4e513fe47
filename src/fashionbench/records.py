"""The committed run records under ``results/``, read for the pages written from them
(published.py, protocol_page.py): which runs a folder holds, and the machine they name."""

from __future__ import annotations

from pathlib import Path

from .rundir import Summary, finished_under, read_summary

NOT_YET = "not yet run"  # what a page says where a figure has no record yet, with the command that makes it


def finished_runs(root: Path, folder: str) -> dict[str, dict[Path, Summary]]:
    """The finished run folders directly under ``root/folder``, by model, in name order,
    each with its summary (read once)."""
    by_model: dict[str, dict[Path, Summary]] = {}
    for path in finished_under(root / folder, recursive=False):
        summary = read_summary(path)
        by_model.setdefault(summary.model, {})[path] = summary
    return by_model


def trained_on(summaries: list[Summary]) -> str:
    """What runs trained on, from their records: the GPU, or the CPU and its cores; and the precision."""
    return "; ".join(sorted({f"{machine_words(s.extra)}, {s.precision or 'fp32'}" for s in summaries}))


def machine_words(record: dict) -> str:
    """'1 NVIDIA H200', or '2 cores of AMD EPYC (AVX512_BF16)': the machine a record names."""
    if record.get("gpu"):
        return record["gpu"]
    bf16 = f" ({record['cpu_bf16'].upper()})" if record.get("cpu_bf16") else ""
    return f"{record.get('cpu_cores', '?')} cores of {record.get('cpu', 'a CPU')}{bf16}"


def record_link(folder: str, model: str, runs: list[Path]) -> str:
    """'[results/table/runs/mini_vgg-s{0,1}](results/table/runs)': runs named MODEL-sSEED."""
    seeds = ",".join(p.name.rsplit("-s", 1)[-1] for p in runs)
    return f"[{folder}/{model}-s{{{seeds}}}]({folder})"

"""Training throughput of every architecture, fp32 against bf16 autocast.

Each model trains with its own recipe's batch size and augmentation through our
engine (``Trainer.train_step``: the same code as ``fashionbench train``). For
each model the two precisions run interleaved, round after round, each
measurement lasting about ``--seconds``; figures are medians over rounds. An
epoch is 55,000 images of training (validation not included).

    python benchmarks/models.py [--models a,b] [--seconds 20] [--rounds 2]
    python benchmarks/models.py --tiny   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fashionbench.config import load_config
from fashionbench.data import load_fashion_mnist
from fashionbench.hardware import cpu_has_native_bf16
from fashionbench.models import count_parameters, reference_figures

from throughput import TRAIN_IMAGES, Ours


def steps_for(variant: Ours, seconds: float) -> int:
    """Steps that take about ``seconds``, from a 2-step trial (after one warm-up step)."""
    start = time.perf_counter()
    variant.run(2)
    per_step = (time.perf_counter() - start) / 3
    return max(3, round(seconds / per_step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(reference_figures()))
    parser.add_argument("--seconds", type=float, default=20, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check of the script (BasicCNN, one short round): its figures mean nothing")
    args = parser.parse_args()
    if args.tiny:
        args.models, args.seconds, args.rounds = "basic_cnn", 0.2, 1

    data = load_fashion_mnist(args.data_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"native bf16: {cpu_has_native_bf16()}; {args.rounds} rounds of ~{args.seconds:.0f} s\n")
    rows = []
    for model in args.models.split(","):
        cfg = load_config(model)
        variants = {p: Ours(cfg, data, p) for p in ("fp32", "bf16")}
        steps = {p: steps_for(v, args.seconds) for p, v in variants.items()}
        speeds: dict[str, list[float]] = {p: [] for p in variants}
        for r in range(args.rounds):
            for p, variant in variants.items():
                speeds[p].append(variant.run(steps[p]))
                print(f"round {r + 1}  {model:<16} {p}  {steps[p]:4d} steps  "
                      f"{speeds[p][-1]:7.1f} img/s", flush=True)
        fp32, bf16 = (statistics.median(speeds[p]) for p in ("fp32", "bf16"))
        params = count_parameters(variants["fp32"].trainer.model)
        rows.append((model, params, cfg.batch_size, fp32, bf16))

    print("\n| model | parameters | batch | fp32 images/s | bf16 images/s | bf16 speed-up "
          "| s/epoch fp32 | s/epoch bf16 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, params, batch, fp32, bf16 in rows:
        print(f"| {model} | {params:,} | {batch} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f}x "
              f"| {TRAIN_IMAGES / fp32:,.0f} | {TRAIN_IMAGES / bf16:,.0f} |")


if __name__ == "__main__":
    main()

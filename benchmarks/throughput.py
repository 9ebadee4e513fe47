"""Training throughput: fashionbench's engine against the conventional PyTorch input pipeline.

Same model, batch size, optimizer and augmentations (flip 0.1, zoom 0.05). The
conventional pipeline is what most tutorials write: a ``Dataset`` that transforms
one image at a time, batched by a ``DataLoader`` with worker processes, and a
plain fp32 model. Ours keeps the uint8 dataset on the device, augments whole
batches, and uses channels_last and bf16 autocast where the hardware has bf16.

The variants run interleaved, round after round, so that a noisy, shared machine
slows them alike; each figure is the median over rounds, and ratios are taken
within each round before the median.

How close to the machine: each variant's arithmetic rate, FLOPs per training image
(three times the forward FLOPs that ``fashionbench models`` counts: the backward pass
computes gradients for both the activations and the weights, two products per forward
one) times images per second, against what the same threads reach on a large matrix
product in the same precision (``--peak-size``), the attainable peak of these cores.

    python benchmarks/throughput.py [--model basic_cnn] [--steps 150] [--rounds 3]
    python benchmarks/throughput.py --tiny   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fashionbench.config import load_config, parse_override
from fashionbench.data import load_fashion_mnist
from fashionbench.hardware import cpu_has_native_bf16, resolve_precision
from fashionbench.models import build_model, forward_flops
from fashionbench.splits import MEAN, STD
from fashionbench.training import Trainer

TRAIN_IMAGES = 55_000  # images in one epoch of the reference recipe


class ConventionalDataset(Dataset):
    """Per-sample transforms, as a torchvision ``Compose`` would do them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flip: float, zoom: float):
        self.images, self.labels, self.flip, self.zoom = images, labels, flip, zoom

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 255  # (1, 28, 28)
        if torch.rand(()) < self.flip:
            x = x.flip(-1)
        scale = 1 + (2 * torch.rand(()).item() - 1) * self.zoom
        theta = torch.tensor([[[1 / scale, 0, 0], [0, 1 / scale, 0]]])
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None], grid, align_corners=False)[0]
        return (x - MEAN) / STD, self.labels[i]


class Conventional:
    def __init__(self, cfg, data, precision: str, workers: int):
        torch.manual_seed(0)
        self.model = build_model(cfg.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9,
                                         nesterov=True, weight_decay=cfg.optim.weight_decay)
        dataset = ConventionalDataset(data.train_images[:TRAIN_IMAGES], data.train_labels[:TRAIN_IMAGES],
                                      cfg.augment.flip, cfg.augment.zoom)
        self.loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                 num_workers=workers)
        self.precision = precision

    def run(self, steps: int) -> float:
        self.model.train()
        batches = iter(self.loader)
        next(batches)  # worker start-up is not counted
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(batches)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                loss = F.cross_entropy(self.model(x).float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return steps * self.loader.batch_size / (time.perf_counter() - start)


class Ours:
    def __init__(self, cfg, data, precision: str, compile: bool = False):
        cfg = load_config(cfg.model, overrides=[parse_override(f"precision={precision}"),
                                                parse_override(f"compile={compile}"),
                                                parse_override("device=cpu")])
        self.trainer = Trainer(cfg, data, run_dir="unused")
        self.batch_size = cfg.batch_size
        self.warmup = 3 if compile else 1

    def run(self, steps: int) -> float:
        t = self.trainer
        t.model.train()
        train = t.splits["train"]
        order = torch.randperm(len(train.labels), generator=t.generator)
        for _ in range(self.warmup):  # torch.compile compiles on the first call
            t.train_step(train.images[order[:self.batch_size]], train.labels[order[:self.batch_size]])
        self.warmup = 1
        start = time.perf_counter()
        for i in range(1, steps + 1):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            t.train_step(train.images[idx], train.labels[idx])
        return steps * self.batch_size / (time.perf_counter() - start)


def matmul_peak(size: int, precision: str, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` products of two size x size matrices."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # the first call picks kernels and allocates
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="basic_cnn")
    parser.add_argument("--steps", type=int, default=150, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (conventional)")
    parser.add_argument("--with-compile", action="store_true",
                        help="also time our engine under torch.compile (compilation not counted)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matrix size of the peak measurement")
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check of the script (a few steps, one round): its figures mean nothing")
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.rounds, args.peak_size = 3, 1, 128

    cfg = load_config(args.model)
    data = load_fashion_mnist(args.data_dir)
    default = resolve_precision("auto", torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: "
          f"{cpu_has_native_bf16()}, our default precision: {default}")
    print(f"model {args.model}, batch {cfg.batch_size}, flip {cfg.augment.flip}, zoom {cfg.augment.zoom}, "
          f"{args.steps} steps x {args.rounds} rounds\n")
    variants = {
        f"conventional fp32, DataLoader {args.workers} workers": Conventional(cfg, data, "fp32", args.workers),
        f"conventional bf16, DataLoader {args.workers} workers": Conventional(cfg, data, "bf16", args.workers),
        "ours fp32": Ours(cfg, data, "fp32"),
        "ours bf16": Ours(cfg, data, "bf16"),
    }
    if args.with_compile:
        variants[f"ours {default}, torch.compile"] = Ours(cfg, data, default, compile=True)
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, variant in variants.items():
            speeds[name].append(variant.run(args.steps))
            print(f"round {r + 1}  {name:<40} {speeds[name][-1]:7.0f} img/s", flush=True)

    names = list(variants)
    conv32, conv16, ours32, ours16 = names[:4]
    ours_default = ours16 if default == "bf16" else ours32
    print(f"\n| pipeline | images/s (median) | s/epoch ({TRAIN_IMAGES:,} images) |\n|---|---:|---:|")
    for name in names:
        med = statistics.median(speeds[name])
        print(f"| {name} | {med:.0f} | {TRAIN_IMAGES / med:.1f} |")

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(speeds[a], speeds[b], strict=True))

    print("\n| comparison | speed-up (median of per-round ratios) |\n|---|---:|")
    print(f"| ours at defaults ({default}) vs conventional at defaults (fp32) | {ratio(ours_default, conv32):.2f}x |")
    print(f"| equal precision, fp32 | {ratio(ours32, conv32):.2f}x |")
    print(f"| equal precision, bf16 | {ratio(ours16, conv16):.2f}x |")
    if args.with_compile:
        print(f"| torch.compile vs eager, ours at {default} | {ratio(names[4], ours_default):.2f}x |")

    # After the timed rounds, so that the product's heat and caches do not skew them.
    peaks = {precision: matmul_peak(args.peak_size, precision) for precision in ("fp32", "bf16")}
    train_flops = 3 * forward_flops(build_model(args.model))[0]
    print(f"\n{args.model}: {train_flops / 1e6:.1f} MFLOPs per training image (3 x forward); "
          f"{args.peak_size}x{args.peak_size} matrix product on {torch.get_num_threads()} threads: "
          f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print("\n| pipeline | GFLOP/s | of the matrix-product peak in its precision |\n|---|---:|---:|")
    for name in names:
        rate = train_flops * statistics.median(speeds[name])
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        print(f"| {name} | {rate / 1e9:.0f} | {100 * rate / peak:.0f}% |")


if __name__ == "__main__":
    main()

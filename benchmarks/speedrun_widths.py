"""Training throughput of speedrun_net at several widths, and of its residual form
(speedrun_resnet) at two, bf16 and fp32, BasicCNN for scale: forward, backward and a
Nesterov SGD step on one synthetic batch of 256 in channels-last, 3 warm-up steps then
12 timed ones, one measurement each (the figures of docs/experiments/speedrun.md).

    python benchmarks/speedrun_widths.py
    python benchmarks/speedrun_widths.py --tiny   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fashionbench.models import build_model, forward_flops
from fashionbench.models.speedrun import speedrun_net, speedrun_resnet

WIDTHS = [(24, 32, 64, 128), (16, 32, 64, 128), (32, 64, 128, 256), (24, 48, 96, 192), (16, 24, 48, 96)]
RESIDUAL_WIDTHS = [(16, 32, 64, 128), (24, 48, 96, 192)]  # speedrun_resnet's own: the second


def images_per_second(model: torch.nn.Module, precision: str, batch: int = 256, steps: int = 12) -> float:
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 1, 28, 28).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for _ in range(3):  # one-off costs: kernel selection, memory pools
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check of the script (batches of 16, 2 timed steps): its figures mean nothing")
    args = parser.parse_args()
    measure = {"batch": 16, "steps": 2} if args.tiny else {}
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    candidates = {"basic_cnn": build_model("basic_cnn")} | {
        ", ".join(map(str, w)): speedrun_net(widths=w) for w in WIDTHS} | {
        "residual " + ", ".join(map(str, w)): speedrun_resnet(widths=w) for w in RESIDUAL_WIDTHS}
    for name, model in candidates.items():
        mflops = forward_flops(model)[0] / 1e6
        speed = {p: images_per_second(model, p, **measure) for p in ("bf16", "fp32")}
        print(f"{name:29s} {mflops:6.1f} MFLOPs  bf16 {speed['bf16']:7.0f} img/s  fp32 {speed['fp32']:7.0f} img/s  "
              f"one epoch of 55,000 in bf16: {55_000 / speed['bf16']:5.1f} s", flush=True)


if __name__ == "__main__":
    main()

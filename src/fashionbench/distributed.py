"""Training in several processes (torchrun): which process this is, the process
group, and BatchNorm synchronized across processes on any device.

torchrun starts one process per device and tells each, through the environment,
its rank, the world size and where to meet (``World.from_env``). Gloo carries the
collectives on CPUs, NCCL on CUDA devices (``World.backend``).

torch's own ``nn.SyncBatchNorm`` refuses CPU tensors, so data-parallel training on
CPUs (and the CPU tests of it) would run with each process normalizing its own
shard: a different model from one process's. ``SyncBatchNorm`` here computes each
BatchNorm's statistics over the whole global batch on any device, with collectives
that autograd differentiates through (``torch.distributed.nn.functional``), so that
N processes at a global batch B train the model one process trains at batch B.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

# torch 2.13 marks torch.distributed.nn.functional.all_reduce deprecated in favour of a
# private module (_functional_collectives); the public, differentiable one is used until
# a public successor exists, without a warning per BatchNorm per process.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                        category=FutureWarning)


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one run."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0      # the device index on this machine

    @classmethod
    def from_env(cls) -> World:
        """What torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder and prints."""
        return self.rank == 0

    def backend(self, device: torch.device) -> str:
        return "nccl" if device.type == "cuda" else "gloo"

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: ``cuda`` means this process's own, cuda:LOCAL_RANK."""
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device


ONE_PROCESS = World()  # training without torchrun


def start(world: World, device: torch.device) -> None:
    """Join the process group torchrun's environment describes."""
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(world.backend(device), rank=world.rank, world_size=world.size)


def peer_lost(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process of the run
    stopped (gloo: the connection closed; NCCL: the communicator aborted)."""
    text = str(error)
    return isinstance(error, RuntimeError) and (
        isinstance(error, getattr(dist, "DistError", ())) or "closed by peer" in text
        or "reset by peer" in text or "NCCL" in text)


def stop() -> None:
    """Leave the process group, once every process is done with it: a process that left
    straight after its last collective could leave another still receiving from it
    (gloo's sends complete before the receive does), waiting forever. Only after
    success: after an error the others may be inside a collective this process will
    never join, so a barrier would wait forever; the process exits instead, and
    torchrun stops the others and says which failed."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


_unsynchronized = False


def sync_active() -> bool:
    return (not _unsynchronized and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


@contextlib.contextmanager
def unsynchronized():
    """Collectives off: for work one process does alone while the others wait (the final
    BatchNorm recompute and evaluation), where a collective would wait for them forever."""
    global _unsynchronized
    _unsynchronized, before = True, _unsynchronized
    try:
        yield
    finally:
        _unsynchronized = before


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes, in place; itself in one process."""
    if sync_active():
        dist.all_reduce(tensor)
    return tensor


def all_max(tensor: torch.Tensor) -> torch.Tensor:
    if sync_active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (picklable objects; on every process)."""
    if not sync_active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def share(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not sync_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch: every
    process's shard, summed across processes. Two collectives per layer (the mean,
    then the variance about it: more accurate than the mean of squares). In eval
    mode, or in a single process, it is plain BatchNorm. Any input rank (1d, 2d)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and sync_active()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        x32 = x.float()  # statistics in fp32 whatever the autocast dtype
        local = torch.cat([x32.sum(dims), x32.new_tensor([x32.numel() / x32.shape[1]])])
        total = dist_fn.all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x32 - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / count  # biased, as BatchNorm normalizes
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                            else self.momentum)  # None: a cumulative average (swa_utils.update_bn)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1), momentum)  # unbiased, as torch's
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by ``SyncBatchNorm``, parameters
    and statistics kept (the state dict keys stay the same)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        sync.load_state_dict(module.state_dict())
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module

"""``torch.distributed`` helpers: ranks from ``torchrun``'s environment, reductions, gathers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK set)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return info()


def reduce_dict(values: dict[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """Each value averaged (or summed) across processes, for logging; the input is left alone."""
    world = info().world_size
    if world < 2:
        return values
    with torch.inference_mode():
        names = list(values)
        stacked = torch.stack([values[k].detach() for k in names])
        dist.all_reduce(stacked)
        if average:
            stacked /= world
        return dict(zip(names, stacked))


def all_gather_objects(obj):
    """A list with every process's ``obj`` (rank order); ``[obj]`` when not distributed."""
    world = info().world_size
    if world < 2:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out

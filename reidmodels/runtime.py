"""Devices and processes: CUDA when present, the ranks ``torchrun`` starts, and what they share (DDP)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["device_for", "distributed_init", "gathered", "mean_across_ranks", "rng_states", "wrap_ddp"]


def device_for(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def distributed_init(device_name: str) -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_name != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1:
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def wrap_ddp(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """The model as its forward pass runs: itself alone, under DDP with several ranks."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def mean_across_ranks(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / world


def gathered(features: dict, world: int) -> dict:
    """Every rank's features, labels and keys, in rank order (equal counts: whole sampler batches)."""
    out = {}
    for name in ("feature", "label"):
        parts = [torch.zeros_like(features[name]) for _ in range(world)]
        dist.all_gather(parts, features[name].contiguous())
        out[name] = torch.cat(parts)
    keys: list = [None] * world
    dist.all_gather_object(keys, features["key"])
    out["key"] = [k for part in keys for k in part]
    return out


def rng_states(generator: torch.Generator, world: int) -> dict:
    """Every rank's augmentation and torch random states (gathered: rank 0 writes them all)."""
    states = [generator.get_state(), torch.get_rng_state()]
    if world > 1:
        everyone = [None] * world
        dist.all_gather_object(everyone, states)
    else:
        everyone = [states]
    return {"generator": [g for g, _ in everyone], "rng": [r for _, r in everyone]}

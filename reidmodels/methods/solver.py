"""The solver: optimisers, optimiser groups and learning-rate schedules, as the official code steps them."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from .recipe import StagePlan

__all__ = ["OPTIMIZERS", "at_rate", "lr_factor", "parameter_groups", "set_lr", "warmup_factor"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def parameter_groups(model: nn.Module, params, plan: StagePlan) -> list[dict]:
    """One optimiser group per parameter of ``params`` (``(name, parameter)`` of ``model``):
    biases at ``bias_lr_factor`` x lr with ``weight_decay_bias``, norm layers at
    ``weight_decay_norm`` (the official ReID codebases' rules)."""
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
    norms = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    groups = []
    for name, p in params:
        bias = "bias" in name  # as the official optimisers test it: attention in_proj_bias too
        lr = plan.lr * (plan.bias_lr_factor if bias else 1.0)
        decay = plan.weight_decay
        if id(p) in norms and plan.weight_decay_norm is not None:
            decay = plan.weight_decay_norm
        if bias and plan.weight_decay_bias is not None:
            decay = plan.weight_decay_bias
        groups.append({"params": [p], "lr": lr, "initial_lr": lr, "weight_decay": decay})
    return groups


def at_rate(groups: list[dict], model: nn.Module, prefixes: tuple[str, ...], lr: float) -> list[dict]:
    """``groups`` with the parameters of ``model`` named ``prefixes...`` at their own rate ``lr``."""
    chosen = {id(p) for n, p in model.named_parameters() if n.startswith(prefixes)}
    for group in groups:
        if id(group["params"][0]) in chosen:
            group["lr"] = group["initial_lr"] = lr
    return groups


def warmup_factor(plan: StagePlan, iteration: int) -> float:
    """fast-reid's linear iteration warm-up: from ``warmup_from`` to 1 over ``warmup_iters``
    (iteration counted from 0 within the stage), multiplying the epoch's rate."""
    if iteration >= plan.warmup_iters:
        return 1.0
    alpha = iteration / plan.warmup_iters
    return plan.warmup_from * (1 - alpha) + alpha


def lr_factor(plan: StagePlan, epoch: int) -> float:
    """The learning rate of ``epoch`` (counted from 0) as a multiple of ``plan.lr``."""
    if plan.schedule == "cosine":
        t = epoch + 1  # timm's scheduler, stepped with the epoch counted from 1
        if t < plan.warmup_epochs:
            return plan.warmup_from + t * (1 - plan.warmup_from) / plan.warmup_epochs
        floor = plan.min_lr / plan.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / plan.epochs))
    if plan.schedule == "warmup-cosine":
        if epoch < plan.warmup_epochs:
            return plan.warmup_from + (1 - plan.warmup_from) * epoch / plan.warmup_epochs
        progress = (epoch - plan.warmup_epochs) / max(plan.epochs - plan.warmup_epochs, 1)
        floor = min(plan.min_lr / plan.lr, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if plan.schedule not in ("constant", "multistep"):
        raise ValueError(f"unknown schedule {plan.schedule!r}: constant, multistep, cosine or warmup-cosine")
    step = epoch + 1  # stepped at the start of each epoch
    warm = 1.0
    if step < plan.warmup_epochs:
        alpha = step / plan.warmup_epochs
        warm = plan.warmup_from * (1 - alpha) + alpha
    if plan.schedule == "constant":
        return warm
    return warm * plan.gamma ** bisect.bisect_right(plan.milestones, step)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group at ``factor`` x its own initial rate."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor

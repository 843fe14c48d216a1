"""The training loop: a run of stages, a stage of epochs, an epoch of steps.

``train(config)`` builds the method named in the config (``reidmodels.factory``),
resolves its official recipe with the config's ``hparams`` overrides, and runs its
stages in order: per stage, the parameters the method says train, its optimiser
groups and schedule (``methods.solver``), identity-balanced P x K batches (or
features computed once for a ``features`` stage: ``engine.data``), AMP on CUDA,
checkpoints per epoch and every ``checkpoint_every`` steps (resumed exactly
mid-epoch through torchdata's ``StatefulDataLoader``), DDP under ``torchrun``
(``runtime``); with ``eval_every``, the last stage is evaluated every N epochs
(``engine.hooks``). Nothing here knows a method by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..card import write_model_card
from ..checkpoint import Progress, file_hash, resume_state, save_checkpoint
from ..factory import build_model
from ..inputs import Transforms, model_inputs, on_device, transforms_for
from ..methods import Method, Recipe, get_method, open_for
from ..methods.solver import OPTIMIZERS, lr_factor, set_lr, warmup_factor
from ..runtime import device_for, distributed_init, mean_across_ranks, rng_states, wrap_ddp
from . import hooks
from .config import TrainConfig
from .data import epoch_batches, epoch_plan, feature_batches, stage_features, train_loader

# torchdata's StatefulDataLoader calls a torch function that torch has deprecated (harmless)
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

__all__ = ["train"]


@dataclass
class Run:
    """What every stage, epoch and step of one run shares."""

    config: TrainConfig
    method: type[Method]
    recipe: Recipe
    model: Method
    data: object  # the opened dataset (or combination)
    facts: dict
    transforms: Transforms
    device: torch.device
    rank: int
    world: int
    saved: dict  # what every checkpoint records of the run: method, facts, backbone, options, recipe, config
    state: dict  # what the checkpoint resumed from holds (empty for a fresh run)
    progress: Progress
    generator: torch.Generator  # the augmentation's random numbers, per rank
    position: dict | None = None  # where a mid-epoch checkpoint stopped, until that epoch is reached
    trace: hooks.Trace | None = None
    loader: object = None
    sampler: object = None
    reader: object = None
    batches: int = 0

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def train(config: TrainConfig) -> dict:
    """Train ``config.method`` on ``config.data``; the summary of this rank's run."""
    run = _start(config)
    start = time.perf_counter()
    for stage in run.model.stages:
        _train_stage(run, stage)
    return _finish(run, time.perf_counter() - start)


def _start(config: TrainConfig) -> Run:
    """The run as set up from the config and the checkpoint it resumes from, if any."""
    if config.eval_every and config.eval_data is None and isinstance(config.data, list) and len(config.data) > 1:
        raise ValueError("eval_every with several training datasets needs eval_data: the dataset to score on")
    rank, world, local_rank = distributed_init(config.device)
    device = device_for(config.device, local_rank)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)  # every rank: each writes its own trace here
    method = get_method(config.method)
    recipe = method.recipe.with_overrides(config.hparams)
    if rank == 0:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        (out / "recipe.json").write_text(json.dumps(recipe.as_dict(), indent=2) + "\n")
    data, facts = open_for(method, config.data)
    options = {"backbone": config.backbone, "pretrained": config.pretrained, "image_size": recipe.image_size}
    model = build_model(method.name, facts=facts, **options, **config.options).to(device)
    saved = {"method": method.name, "facts": facts, "backbone": config.backbone, "options": config.options}
    saved |= {"recipe": recipe.as_dict(), "config": dataclasses.asdict(config)}
    run = Run(
        config, method, recipe, model, data, facts, transforms_for(recipe, method.pixel_stats), device, rank, world,
        saved, state={}, progress=Progress(), generator=torch.Generator(),
    )  # fmt: skip
    run.reader, run.sampler, run.loader = train_loader(run, data, facts, recipe, run.transforms)
    _resume(run)
    return run


def _resume(run: Run) -> None:
    """The model, progress and random states of the run's checkpoint (none: a fresh start)."""
    run.state = resume_state(run.out / "checkpoint.pt", run.model, run.config.resume)
    run.progress = Progress.of(run.state)
    run.generator.manual_seed(run.config.seed + run.rank)
    run.position = run.state.get("position")
    if run.position is not None:
        run.generator.set_state(run.position["generator"][run.rank])
        torch.set_rng_state(run.position["rng"][run.rank])
        run.progress.step = run.position["step"]
    run.trace = hooks.Trace(run.out, run.rank, run.progress.step) if run.config.trace else None


def _train_stage(run: Run, stage: str) -> None:
    """The remaining epochs of ``stage``: its trainable parameters, optimiser and schedule."""
    plan, model, progress = run.recipe.stages[stage], run.model, run.progress
    first = progress.epochs_done.get(stage, 0)
    if first >= plan.epochs:
        return
    model.set_trainable(stage)
    optimizer = OPTIMIZERS[plan.optimizer](model.parameter_groups(stage, run.recipe))
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp)
    if run.state.get("stage") == stage and "optimizer" in run.state:
        optimizer.load_state_dict(run.state["optimizer"])
        scaler.load_state_dict(run.state.get("scaler", {}))
    model.begin_stage(stage)
    wrapped = wrap_ddp(model, run.device, run.world)
    progress.stage_start.setdefault(stage, progress.step)
    features = None
    if plan.batches == "features":
        features = stage_features(model, stage, run.data, run.recipe, run.transforms, run.loader, run.sampler, run)
    for epoch in range(first, plan.epochs):
        _train_epoch(run, stage, epoch, optimizer, scaler, wrapped, features)


def _train_epoch(run: Run, stage: str, epoch: int, optimizer, scaler, wrapped: nn.Module, features) -> None:
    """One epoch of ``stage``: its batches, a checkpoint every ``checkpoint_every`` steps and
    at the end, the mean loss logged, and the evaluation hook."""
    plan, config, progress = run.recipe.stages[stage], run.config, run.progress
    passes, steps_per_epoch = epoch_plan(plan, run.recipe, run.facts, run.sampler, run.world, epoch, features)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    run.reader.set_epoch(epoch)
    set_lr(optimizer, lr_factor(plan, epoch))
    run.model.train()
    position = run.position
    resume = position if position and (position["stage"], position["epoch"]) == (stage, epoch) else None
    total, steps = (resume["loss_total"], resume["steps"]) if resume else (0.0, 0)
    if features is not None:
        batches = feature_batches(features, plan, config.seed, epoch, steps_per_epoch, run.rank, run.world, resume)
    else:
        bar = hooks.progress(run.rank, f"{stage} {epoch + 1}/{plan.epochs}")
        batches = epoch_batches(run.loader, run.sampler, epoch, passes, steps_per_epoch, bar, resume)
    for passed, batch in batches:
        loss = _step(run, stage, epoch, batch, optimizer, scaler, wrapped, augment=features is None)
        total += loss
        steps += 1
        progress.step += 1
        run.batches += 1
        if run.trace is not None:
            run.trace.write(progress.step, stage, epoch, batch["key"], loss)
        if config.checkpoint_every and progress.step % config.checkpoint_every == 0:
            where = {"stage": stage, "epoch": epoch, "pass": passed, "step": progress.step, "steps": steps}
            where |= {"loss_total": total, "loader": run.loader.state_dict()} | rng_states(run.generator, run.world)
            _checkpoint(run, stage, optimizer, scaler, position=where)
    run.position = None
    mean = mean_across_ranks(total / max(steps, 1), run.device, run.world)
    progress.log.append({"stage": stage, "epoch": epoch + 1, "loss": round(mean, 6)})
    if run.rank == 0 and not sys.stderr.isatty():
        print(f"{stage} epoch {epoch + 1}/{plan.epochs}: loss {mean:.4f} ({steps} steps)", file=sys.stderr)
    progress.epochs_done = dict(progress.epochs_done, **{stage: epoch + 1})
    if config.eval_every and stage == run.model.stages[-1] and (epoch + 1) % config.eval_every == 0:
        hooks.evaluate_now(run, where=(stage, epoch + 1, progress.step))
    _checkpoint(run, stage, optimizer, scaler)


def _step(run: Run, stage: str, epoch: int, batch: dict, optimizer, scaler, wrapped: nn.Module, augment: bool) -> float:
    """One optimizer step on ``batch``; its loss."""
    plan, device = run.recipe.stages[stage], run.device
    inputs = on_device(batch, device)
    if augment:
        inputs["x"] = model_inputs(
            batch, device, stats=run.model.pixel_stats, generator=run.generator, recipe=run.recipe
        )
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=run.amp):
        loss = run.model.loss(wrapped(inputs, stage=stage), inputs, stage, run.recipe)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if plan.warmup_iters:  # fast-reid's iteration warm-up on top of the epoch's rate
        set_lr(
            optimizer, lr_factor(plan, epoch) * warmup_factor(plan, run.progress.step - run.progress.stage_start[stage])
        )
    if plan.grad_clip:  # per parameter, as the official code clips
        scaler.unscale_(optimizer)
        for group in optimizer.param_groups:
            for p in group["params"]:
                torch.nn.utils.clip_grad_norm_(p, plan.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _checkpoint(run: Run, stage: str, optimizer, scaler, position: dict | None = None) -> None:
    """``checkpoint.pt`` on rank 0 (one writer; the sampler position is the same on every rank)."""
    if run.rank != 0:
        return
    run.progress.stage = stage
    state = run.progress.state(scaler) | ({"position": position} if position else {}) | run.saved
    save_checkpoint(run.out, run.model, optimizer, state)


def _finish(run: Run, seconds: float) -> dict:
    """The train log and the model card (rank 0); this rank's summary."""
    if run.rank == 0:
        hooks.write_log(run.out / "train_log.csv", run.progress.log)
        card = run.saved | {"sha256": file_hash(run.out / "checkpoint.pt"), "versions": _versions(run.data)}
        write_model_card(run.out, info=card, model=run.model)
    summary = {
        "rank": run.rank,
        "world_size": run.world,
        "batches": run.batches,
        "seconds": round(seconds, 1),
        "param_sha256": _param_hash(run.model),
        "device": str(run.device),
    }
    if run.world > 1:
        dist.barrier()
    return summary


def _versions(data) -> dict:
    """Name -> version of the dataset(s) a run trains on (a combination: each part)."""
    parts = getattr(data, "parts", [data])
    return {p.manifest["source"]: p.version for p in parts}


def _param_hash(model: nn.Module) -> str:
    """Hash of the parameters (not BN running statistics, which each DDP rank keeps)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]

"""Training of any registered method on reiddata shards.

``train(config)`` builds the method named in the config (``reidmodels.methods``),
resolves its official recipe with the config's ``hparams`` overrides, and runs its
stages in order: per stage, the parameters the method says train, its optimiser
groups and schedule, identity-balanced P x K batches (or features computed once for
a ``features`` stage), AMP on CUDA, checkpoints per epoch and every
``checkpoint_every`` steps (resumed exactly mid-epoch through torchdata's
``StatefulDataLoader``), DDP under ``torchrun``; with ``eval_every``, the last stage is
evaluated every N epochs through the evaluation room's own path
(``reidmodels.evaluation``), and the metrics are logged. Nothing here knows a method
by name.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader

from reiddata import ChunkIdentitySampler, IdentityBalancedSampler, RandomIdentitySampler, open_dataset
from reiddata.combine import split_reader

from .card import write_model_card
from .checkpoint import file_hash, load_trained, read_checkpoint, resume_state, save_checkpoint
from .evaluation.features import extract_features, test_rows
from .evaluation.run import EvalConfig, evaluate, score
from .inputs import Collate, model_inputs, on_device, to_uint8_tensor
from .methods import Method, Recipe, dataset_facts, get_method
from .methods.base import lr_factor, warmup_factor
from .runtime import device_for, distributed_init
from .transforms import PIPELINES

# torchdata's StatefulDataLoader calls a torch function that torch has deprecated (harmless)
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

__all__ = ["EvalConfig", "TrainConfig", "evaluate", "load_config", "load_trained", "read_checkpoint", "train"]


@dataclass
class TrainConfig:
    # a converted dataset (reiddata convert): a folder or a URL; a list of them trains on all
    # at once, identities and cameras namespaced per dataset (reiddata.combine)
    data: str | list[str]
    out: str  # run folder: checkpoint.pt, train_log.csv, config.json, recipe.json
    method: str  # a name of reidmodels.METHODS
    backbone: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag (online) or local checkpoint (ResNet methods: torchvision's)
    options: dict = field(default_factory=dict)  # the method's constructor options (prompts, shared_tokens, ...)
    hparams: dict = field(default_factory=dict)  # overrides of the method's official recipe: p, k, stages: {...}
    workers: int = 2
    device: str = "auto"  # auto: CUDA when present
    amp: bool = True  # only on CUDA
    seed: int = 0
    resume: bool = True
    checkpoint_every: int | None = None  # also checkpoint every N steps, mid-epoch (resumes exactly there)
    trace: bool = False  # write trace-rank<r>.jsonl: each step's sample keys and loss, per rank
    max_steps_per_epoch: int | None = None  # for smoke runs
    eval_every: int | None = None  # evaluate every N epochs of the last stage (the official EVAL_PERIOD)
    eval_data: str | None = None  # the dataset to evaluate on (default: data)


def load_config(cls, path: str | Path, section: str | Sequence[str], **overrides):
    """A config dataclass from YAML sections of a params file, with overrides.

    ``section`` is a key or a dotted path (``runs.NAME.train``); several sections
    are merged in order, later keys replacing earlier ones (shared defaults, then a run's).
    """
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    values: dict = {}
    for name in [section] if isinstance(section, str) else section:
        node = document
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{path}: no section {name!r} (check the name against the file)")
            node = node[part]
        if node is not None and not isinstance(node, dict):
            raise ValueError(f"{path} [{name}]: expected a mapping of settings, found {type(node).__name__}")
        values.update(node or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path} [{section}]: unknown keys {unknown}; allowed: {sorted(names)}")
    return cls(**values)


# --- training ------------------------------------------------------------------


def train(config: TrainConfig) -> dict:
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
    data = open_dataset(config.data)
    facts = dataset_facts(data)
    if facts["kind"] != method.kind:
        raise ValueError(f"method {method.name} trains on {method.kind} datasets; {config.data} holds {data.kind}")
    model = method.build(
        facts, backbone=config.backbone, pretrained=config.pretrained, image_size=recipe.image_size, **config.options
    )
    model.to(device)
    train_set = split_reader(
        data,
        "train",
        decode="numpy",
        transform=to_uint8_tensor(recipe.image_size, PIPELINES[recipe.transforms].train_resize),
        clip_mode=recipe.clip_mode,
        clip_length=recipe.clip_length,
        seed=config.seed,
    )
    sampler = SAMPLERS[recipe.sampler](
        train_set.labels, p=recipe.p, k=recipe.k, seed=config.seed, rank=rank, world_size=world
    )
    loader = StatefulDataLoader(  # its state_dict is the sampler's and workers' position
        train_set,
        batch_sampler=sampler,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        collate_fn=Collate(method, facts),
    )
    saved = {"method": method.name, "facts": facts, "backbone": config.backbone, "options": config.options}
    saved |= {"recipe": recipe.as_dict(), "config": dataclasses.asdict(config)}
    state = resume_state(out / "checkpoint.pt", model, config.resume)
    amp = config.amp and device.type == "cuda"
    log_rows: list[dict] = state.get("log", [])
    generator = torch.Generator().manual_seed(config.seed + rank)
    position = state.get("position")  # where a mid-epoch checkpoint stopped
    if position is not None:
        generator.set_state(position["generator"][rank])
        torch.set_rng_state(position["rng"][rank])
    step = position["step"] if position else state.get("step", 0)  # optimizer steps so far, all stages
    trace = _Trace(out, rank, step) if config.trace else None
    done: dict = state.get("epochs_done", {})
    stage_start: dict = state.get("stage_start", {})  # the step each stage began at: iteration warm-ups
    batches_seen = 0
    start = time.perf_counter()
    for stage in model.stages:
        plan = recipe.stages[stage]
        first = done.get(stage, 0)
        if first >= plan.epochs:
            continue
        for name, p in model.named_parameters():
            p.requires_grad_(model.trains(name, stage))
        groups = model.parameter_groups(stage, recipe)
        optimizer = OPTIMIZERS[plan.optimizer](groups)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        if state.get("stage") == stage and "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state.get("scaler", {}))
        model.begin_stage(stage)
        wrapped = _wrap(model, device, world)
        stage_start.setdefault(stage, step)
        features = None
        if plan.batches == "features":
            features = _stage_features(model, stage, data, recipe, config, loader, sampler, device, generator, world)
        for epoch in range(first, plan.epochs):
            passes, steps_per_epoch = _epoch_plan(plan, recipe, facts, sampler, world, epoch, features)
            if config.max_steps_per_epoch is not None:
                steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
            train_set.set_epoch(epoch)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(plan, epoch)
            model.train()
            resume = position if position and (position["stage"], position["epoch"]) == (stage, epoch) else None
            total, steps = (resume["loss_total"], resume["steps"]) if resume else (0.0, 0)
            desc = f"{stage} {epoch + 1}/{plan.epochs}"
            if features is not None:
                batches = _feature_batches(features, plan, config.seed, epoch, steps_per_epoch, rank, world, resume)
            else:
                batches = _epoch_batches(loader, sampler, epoch, passes, steps_per_epoch, rank, desc, resume)
            for passed, batch in batches:
                inputs = on_device(batch, device)
                if features is None:
                    stats = model.pixel_stats
                    inputs["x"] = model_inputs(batch, device, stats=stats, generator=generator, recipe=recipe)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    loss = model.loss(wrapped(inputs, stage=stage), inputs, stage, recipe)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if plan.warmup_iters:  # fast-reid's iteration warm-up on top of the epoch's rate
                    factor = lr_factor(plan, epoch) * warmup_factor(plan, step - stage_start[stage])
                    for group in optimizer.param_groups:
                        group["lr"] = group["initial_lr"] * factor
                if plan.grad_clip:  # per parameter, as the official code clips
                    scaler.unscale_(optimizer)
                    for group in optimizer.param_groups:
                        for p in group["params"]:
                            torch.nn.utils.clip_grad_norm_(p, plan.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                steps += 1
                step += 1
                batches_seen += 1
                if trace is not None:
                    trace.write(step, stage, epoch, batch["key"], float(loss.detach()))
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    where = {"stage": stage, "epoch": epoch, "pass": passed, "step": step, "steps": steps}
                    where |= {"loss_total": total, "loader": loader.state_dict()}
                    where |= _rng_states(generator, device, world)
                    if rank == 0:  # one writer; the sampler position is the same on every rank
                        progress = _progress_state(done, stage, log_rows, step, stage_start, scaler)
                        save_checkpoint(out, model, optimizer, progress | {"position": where} | saved)
            position = None
            mean = _mean_across_ranks(total / max(steps, 1), device, world)
            log_rows.append({"stage": stage, "epoch": epoch + 1, "loss": round(mean, 6)})
            if rank == 0 and not sys.stderr.isatty():
                print(f"{stage} epoch {epoch + 1}/{plan.epochs}: loss {mean:.4f} ({steps} steps)", file=sys.stderr)
            done = dict(done, **{stage: epoch + 1})
            if config.eval_every and stage == model.stages[-1] and (epoch + 1) % config.eval_every == 0:
                _evaluate_now(model, saved, config, device, rank, world, where=(stage, epoch + 1, step))
            if rank == 0:
                progress = _progress_state(done, stage, log_rows, step, stage_start, scaler)
                save_checkpoint(out, model, optimizer, progress | saved)
    if rank == 0:
        _write_log(out / "train_log.csv", log_rows)
        card = saved | {"sha256": file_hash(out / "checkpoint.pt"), "versions": _versions(data)}
        write_model_card(out, info=card, model=model)
    summary = {
        "rank": rank,
        "world_size": world,
        "batches": batches_seen,
        "seconds": round(time.perf_counter() - start, 1),
        "param_sha256": _param_hash(model),
        "device": str(device),
    }
    if world > 1:
        dist.barrier()
    return summary


def _versions(data) -> dict:
    """Name -> version of the dataset(s) a run trains on (a combination: each part)."""
    parts = getattr(data, "parts", [data])
    return {p.manifest["source"]: p.version for p in parts}


def _progress_state(done: dict, stage: str, log_rows: list, step: int, stage_start: dict, scaler) -> dict:
    """What a checkpoint records of the run's progress (a mid-epoch one adds its position)."""
    return {
        "epochs_done": done,
        "stage": stage,
        "log": log_rows,
        "step": step,
        "stage_start": stage_start,
        "scaler": scaler.state_dict(),
    }


def _evaluate_now(model: Method, saved: dict, config: TrainConfig, device, rank: int, world: int, where) -> None:
    """Score the model as it is on every protocol, through the same path as ``evaluate``
    (features split over the ranks, ranked on rank 0); log and append to ``eval_log.csv``.

    Random states are put back afterwards, so a run with ``eval_every`` trains exactly as
    one without (a data loader draws its workers' seeds from torch's generator)."""
    rng = torch.get_rng_state()
    data = open_dataset(config.eval_data or config.data)
    eval_config = EvalConfig(data=config.eval_data or config.data, checkpoint="", out=config.out)
    rows = test_rows(data)
    model.eval()
    info = {"method": saved["method"], "recipe": saved["recipe"], "facts": saved["facts"]}
    features, predictions = extract_features(
        model, data, rows, recipe=info["recipe"], facts=info["facts"], batch_size=eval_config.batch_size,
        workers=config.workers, device=device, clip_mode=None, clip_length=None, rank=rank, world=world,
    )  # fmt: skip
    model.train()
    torch.set_rng_state(rng)
    if rank != 0:
        return
    metrics, _, _ = score(model, data, rows, features, predictions, eval_config, device)
    stage, epoch, step = where
    log = Path(config.out) / "eval_log.csv"
    fields = ["step", "stage", "epoch", "protocol", "mAP", "rank1", "mINP"]
    with log.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if f.tell() == 0:
            writer.writeheader()
        for name in data.protocols:
            m = metrics[name]
            row = {"step": step, "stage": stage, "epoch": epoch, "protocol": name}
            writer.writerow(row | {k: m[k] for k in fields[4:]})
            print(f"eval {stage} epoch {epoch} {name}: mAP {m['mAP']:.4f} rank-1 {m['rank1']:.4f}", file=sys.stderr)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


SAMPLERS = {"identity": RandomIdentitySampler, "chunks": ChunkIdentitySampler, "balanced": IdentityBalancedSampler}
FEATURE_PASS = 1_000_000  # the sampler and frame epoch of a stage's feature pass: none that training uses


def _epoch_plan(plan, recipe: Recipe, facts: dict, sampler, world: int, epoch: int, features) -> tuple[int, int]:
    """``(sampler passes, batches)`` of one epoch, per rank, as the sampler counts them.

    The official samplers (``identity``, ``chunks``): ``passes`` passes (1 unless a recipe
    says otherwise), each as long as that sampler epoch is. The ``balanced`` one: about train
    images / (P K) batches (``images``) or ``passes`` x every identity once
    (``identities``). A ``features`` stage: its feature batches, ceil(N / batch)."""
    if plan.batches == "features":
        n = len(features["label"])
        batches = math.ceil(n / plan.feature_batch) if plan.feature_rounding == "ceil" else n // plan.feature_batch
        return 1, batches if world == 1 else batches // world  # every rank the same count, or DDP waits
    if plan.batches not in ("images", "identities"):
        raise ValueError(f"unknown batches {plan.batches!r}: images, identities or features")
    if recipe.sampler != "balanced":  # the official samplers: whole passes
        steps = 0
        for r in range(plan.passes):
            sampler.set_epoch(epoch * plan.passes + r)
            steps += len(sampler)
        return plan.passes, steps
    if plan.batches == "identities":
        return plan.passes, plan.passes * len(sampler)
    steps = max(1, facts["train_samples"] // (recipe.p * recipe.k * world))
    return math.ceil(steps / max(len(sampler), 1)), steps


def _epoch_batches(loader, sampler, epoch: int, passes: int, steps: int, rank: int, desc: str, resume: dict | None):
    """``(pass, batch)`` for one epoch of ``steps`` P x K batches in ``passes`` sampler
    epochs (each its own seed); from a mid-epoch ``resume`` position."""
    done = resume["steps"] if resume else 0
    for r in range(resume["pass"] if resume else 0, passes):
        sampler.set_epoch(epoch * passes + r)
        if resume and r == resume["pass"]:
            loader.load_state_dict(resume["loader"])  # the next iter goes on after its last batch
        for batch in _progress(loader, rank, desc):
            if done >= steps:
                return
            done += 1
            yield r, batch


@torch.no_grad()
def _stage_features(model: Method, stage: str, data, recipe: Recipe, config, loader, sampler, device, generator, world):
    """The features a ``features`` stage trains on, computed once: every train item with the
    test transform (``plain``: CLIP-ReID's), or one pass of the training loader, its sampler,
    random frames and augmentation (``sampler``: VSLA-CLIP's; gathered from every rank)."""
    plan = recipe.stages[stage]
    model.eval()
    augmented = plan.feature_source == "sampler"
    if augmented:
        sampler.set_epoch(FEATURE_PASS)
        loader.dataset.set_epoch(FEATURE_PASS)
        batches = loader
    else:
        dataset = split_reader(
            data,
            "train",
            decode="numpy",
            transform=to_uint8_tensor(recipe.image_size, PIPELINES[recipe.transforms].test_resize),
            train=False,
            clip_mode=recipe.clip_mode,
            clip_length=recipe.clip_length,
        )
        batches = torch.utils.data.DataLoader(
            dataset, batch_size=64, num_workers=config.workers, collate_fn=loader.collate_fn
        )
    features, labels, keys = [], [], []
    for batch in batches:
        x = model_inputs(
            batch, device, stats=model.pixel_stats, generator=generator if augmented else None,
            recipe=recipe if augmented else None,
        )  # fmt: skip
        features.append(model.stage_features(stage, x, on_device(batch, device)).float())
        labels.append(batch["label"].to(device))
        keys += batch["key"]
    out = {"feature": torch.cat(features), "label": torch.cat(labels), "key": keys}
    if augmented and world > 1:  # each rank saw its share of the pass: all of them train on all
        out = _gathered(out, world)
    return out


def _gathered(features: dict, world: int) -> dict:
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


def _feature_batches(features: dict, plan, seed: int, epoch: int, steps: int, rank: int, world: int, resume):
    """``(0, batch)``: a seeded random order of the features each epoch, batches of
    ``feature_batch``; rank r takes batches r, r + W, ..."""
    order = torch.randperm(len(features["label"]), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    chunks = order.split(plan.feature_batch)[rank::world][:steps]
    for chunk in chunks[resume["steps"] if resume else 0 :]:
        index = chunk.to(features["label"].device)
        keys = [features["key"][i] for i in chunk.tolist()]
        yield 0, {"feature": features["feature"][index], "label": features["label"][index], "key": keys}


def _wrap(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def _mean_across_ranks(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / world


def _rng_states(generator: torch.Generator, device: torch.device, world: int) -> dict:
    """Every rank's augmentation and torch random states (gathered: rank 0 writes them all)."""
    states = [generator.get_state(), torch.get_rng_state()]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, states)
    else:
        gathered = [states]
    return {"generator": [g for g, _ in gathered], "rng": [r for _, r in gathered]}


class _Trace:
    """``trace-rank<r>.jsonl``: one line per step (step, stage, epoch, loss, the batch's sample keys).

    On resume, lines after the checkpoint's step (written before the job died) are dropped first.
    """

    def __init__(self, out: Path, rank: int, step: int) -> None:
        self.path = out / f"trace-rank{rank}.jsonl"
        kept = []  # a fresh run (step 0) starts an empty trace
        if step and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, stage: str, epoch: int, keys: list[str], loss: float) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "stage": stage, "epoch": epoch + 1, "loss": loss, "keys": keys}) + "\n")


def _progress(loader, rank: int, desc: str):
    """A progress bar on rank 0 when stderr is a terminal (logs get one line per epoch instead)."""
    if rank != 0 or not sys.stderr.isatty():
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=desc, leave=False, mininterval=2.0)


def _param_hash(model: nn.Module) -> str:
    """Hash of the parameters (not BN running statistics, which each DDP rank keeps)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


def _write_log(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "stage", "epoch", "loss"])
        writer.writeheader()
        for step, row in enumerate(rows, start=1):
            writer.writerow({"step": step, **row})

"""Training and evaluation of any registered method on reiddata shards.

``train(config)`` builds the method named in the config (``reidmodels.methods``),
resolves its official recipe with the config's ``hparams`` overrides, and runs its
stages in order: per stage, the parameters the method says train, its optimiser
groups and schedule, identity-balanced P x K batches (or features computed once for
a ``features`` stage), AMP on CUDA, checkpoints per epoch and every
``checkpoint_every`` steps (resumed exactly mid-epoch through torchdata's
``StatefulDataLoader``), DDP under ``torchrun``. ``evaluate(config)`` extracts the
method's test feature once per (dataset version, checkpoint), scores every protocol
with its own match rule, and adds the method's extra metrics. Nothing here knows a
method by name.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader

from reiddata import IdentityBalancedSampler, ShardDataset, open_dataset

from .evaluation import evaluate_protocol
from .methods import Method, Recipe, dataset_facts, get_method
from .methods.base import VIEWS, lr_factor

# torchdata's StatefulDataLoader calls a torch function that torch has deprecated (harmless)
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

__all__ = ["EvalConfig", "TrainConfig", "evaluate", "load_config", "load_trained", "train"]


@dataclass
class TrainConfig:
    data: str  # a converted dataset (reiddata convert): a folder or a URL
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


@dataclass
class EvalConfig:
    data: str
    checkpoint: str  # a run folder or its checkpoint.pt
    out: str  # metrics.json, cmc.csv
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    clip_length: int | None = None  # tracklets: None = the method's recipe
    clip_mode: str | None = None
    metric: str = "cosine"
    cache: str | None = None  # feature cache folder (default: <out>/features)


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


# --- devices, processes, data -------------------------------------------------


def _device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _distributed_init(device_name: str) -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_name != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1:
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _to_uint8_tensor(size: tuple[int, int]):
    import cv2

    def transform(image: np.ndarray) -> torch.Tensor:  # bicubic, as the official transforms resize
        resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        return torch.from_numpy(resized).permute(2, 0, 1).contiguous()

    return transform


class Collate:
    """A batch as the methods read it: pixels, label, pid, camid, view index, keys and the
    fields the method declares: attribute value indices and SIDs (-1 where a sample has none).

    (The default collate cannot batch ``attributes``, absent on distractors.)
    """

    def __init__(self, method: type[Method], facts: dict) -> None:
        self.names = facts["attribute_names"] if "attributes" in method.fields else []
        self.lookup = [{v: i for i, v in enumerate(vs)} for vs in facts["attribute_values"]] if self.names else []
        self.sid_groups = list(method.sid_groups) if "sid" in method.fields else []

    def __call__(self, items: list[dict]) -> dict:
        out = {k: torch.as_tensor([item[k] for item in items]) for k in ("label", "pid", "camid")}
        out["key"] = [item["key"] for item in items]
        out["view"] = torch.as_tensor([VIEWS.index(item["view"]) for item in items])
        if self.names:
            out["attributes"] = torch.as_tensor(
                [
                    [
                        lk[item["attributes"][n]] if item.get("attributes") else -1
                        for n, lk in zip(self.names, self.lookup)
                    ]
                    for item in items
                ]
            )
        if self.sid_groups:
            out["sid"] = torch.as_tensor(
                [[item["sid"][g] if item.get("sid") else -1 for g in self.sid_groups] for item in items]
            )
        if "image" in items[0]:
            out["image"] = torch.stack([item["image"] for item in items])
        else:
            out["frames"] = [torch.stack(frames) for frames in zip(*(item["frames"] for item in items))]
        return out


def _inputs(
    batch: dict,
    device: torch.device,
    *,
    stats: tuple,
    generator: torch.Generator | None = None,
    recipe: Recipe | None = None,
) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) or clips (N, T, 3, H, W) on ``device``.

    With a ``recipe`` (training), augmentation on the device, per sample (per tracklet:
    the whole clip): horizontal flip, zero padding + random crop back, random erasing.
    """
    x = batch["image"] if "image" in batch else torch.stack(batch["frames"], dim=1)
    x = x.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(stats[0], device=device).view(3, 1, 1)
    std = torch.tensor(stats[1], device=device).view(3, 1, 1)
    x = (x - mean) / std
    if recipe is None:
        return x
    n, shape = x.shape[0], [1] * (x.dim() - 1)
    if recipe.flip:
        mask = torch.rand(n, generator=generator).to(device) < recipe.flip
        x = torch.where(mask.view(-1, *shape), x.flip(-1), x)
    if recipe.pad:
        pad = recipe.pad
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x.flatten(0, -4), (pad, pad, pad, pad)).view(*x.shape[:-2], h + 2 * pad, w + 2 * pad)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, ..., dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    if recipe.random_erasing:
        x = _random_erasing(x, recipe.random_erasing, generator)
    return x


def _on_device(batch: dict, device: torch.device) -> dict:
    """The batch's labels and declared fields on ``device`` (what ``forward`` and ``loss`` read)."""
    return {k: v.to(device) for k, v in batch.items() if k in ("label", "view", "attributes", "sid", "feature")}


def _random_erasing(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Erase one random rectangle (2-40% of the area, aspect 0.3-3.3) per chosen sample, to 0 (the mean)."""
    h, w = x.shape[-2:]
    x = x.clone()
    for i in range(x.shape[0]):
        if float(torch.rand(1, generator=generator)) >= p:
            continue
        for _ in range(10):
            area = h * w * float(torch.empty(1).uniform_(0.02, 0.4, generator=generator))
            aspect = float(torch.empty(1).uniform_(0.3, 3.3, generator=generator))
            eh, ew = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
            if eh < h and ew < w:
                top = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                x[i, ..., top : top + eh, left : left + ew] = 0
                break
    return x


# --- training ------------------------------------------------------------------


def train(config: TrainConfig) -> dict:
    rank, world, local_rank = _distributed_init(config.device)
    device = _device(config.device, local_rank)
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
    train_set = ShardDataset(
        data,
        "train",
        decode="numpy",
        transform=_to_uint8_tensor(recipe.image_size),
        clip_mode=recipe.clip_mode,
        clip_length=recipe.clip_length,
        seed=config.seed,
    )
    sampler = IdentityBalancedSampler(
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
    state = _resume(out / "checkpoint.pt", model, config.resume)
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
        features = None
        if plan.batches == "features":
            features = _stage_features(model, stage, data, recipe, config.workers, loader.collate_fn, device)
        steps_per_epoch = _steps_per_epoch(plan, recipe, facts, sampler, world, features)
        if config.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        for epoch in range(first, plan.epochs):
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
                batches = _epoch_batches(loader, sampler, epoch, steps_per_epoch, rank, desc, resume)
            for passed, batch in batches:
                inputs = _on_device(batch, device)
                if features is None:
                    inputs["x"] = _inputs(batch, device, stats=model.pixel_stats, generator=generator, recipe=recipe)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    loss = model.loss(wrapped(inputs, stage=stage), inputs, stage, recipe)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
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
                        progress = {"epochs_done": done, "stage": stage, "log": log_rows, "step": step}
                        progress |= {"scaler": scaler.state_dict(), "position": where}
                        _save(out, model, optimizer, progress | saved)
            position = None
            mean = _mean_across_ranks(total / max(steps, 1), device, world)
            log_rows.append({"stage": stage, "epoch": epoch + 1, "loss": round(mean, 6)})
            if rank == 0 and not sys.stderr.isatty():
                print(f"{stage} epoch {epoch + 1}/{plan.epochs}: loss {mean:.4f} ({steps} steps)", file=sys.stderr)
            done = dict(done, **{stage: epoch + 1})
            if rank == 0:
                progress = {"epochs_done": done, "stage": stage, "log": log_rows, "step": step}
                _save(out, model, optimizer, progress | {"scaler": scaler.state_dict()} | saved)
    if rank == 0:
        _write_log(out / "train_log.csv", log_rows)
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


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def _steps_per_epoch(plan, recipe: Recipe, facts: dict, sampler, world: int, features) -> int:
    """Batches per epoch and rank: about train images / (P K) (``images``), ``passes`` x every
    identity once (``identities``), or the feature batches (``features``)."""
    if plan.batches == "features":
        batches = math.ceil(len(features["label"]) / plan.feature_batch)
        return batches if world == 1 else batches // world
    if plan.batches == "identities":
        return plan.passes * len(sampler)
    if plan.batches == "images":
        return max(1, facts["train_samples"] // (recipe.p * recipe.k * world))
    raise ValueError(f"unknown batches {plan.batches!r}: images, identities or features")


def _epoch_batches(loader, sampler, epoch: int, steps: int, rank: int, desc: str, resume: dict | None):
    """``(pass, batch)`` for one epoch of ``steps`` identity-balanced batches: as many passes
    as that takes, each its own sampler epoch; from a mid-epoch ``resume`` position."""
    done = resume["steps"] if resume else 0
    passes = math.ceil(steps / max(len(sampler), 1))
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
def _stage_features(model: Method, stage: str, data, recipe: Recipe, workers: int, collate: Collate, device) -> dict:
    """Every train sample's feature for a ``features`` stage, computed once without augmentation."""
    dataset = ShardDataset(
        data,
        "train",
        decode="numpy",
        transform=_to_uint8_tensor(recipe.image_size),
        train=False,
        clip_mode=recipe.clip_mode,
        clip_length=recipe.clip_length,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=64,
        num_workers=workers,
        collate_fn=collate,
    )
    model.eval()
    features, labels, keys = [], [], []
    for batch in loader:
        x = _inputs(batch, device, stats=model.pixel_stats)
        features.append(model.stage_features(stage, x, _on_device(batch, device)).float())
        labels.append(batch["label"].to(device))
        keys += batch["key"]
    return {"feature": torch.cat(features), "label": torch.cat(labels), "key": keys}


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


def _plain(value):
    """Numbers, strings, lists and dicts only: what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _save(out: Path, model, optimizer, state: dict) -> None:
    tmp = out / "checkpoint.pt.tmp"
    # schedules may leave numpy floats in the optimizer's lr: _plain makes everything plain data
    torch.save({"model": model.state_dict(), **_plain({"optimizer": optimizer.state_dict(), **state})}, tmp)
    tmp.replace(out / "checkpoint.pt")  # a crash never leaves half a checkpoint


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents: tensors, numbers, strings, lists and dicts only, never code.

    ``weights_only=True`` makes torch refuse any pickled object that is not plain data,
    so a hostile checkpoint cannot run anything when it is loaded.
    """
    import pickle

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: refused: not a plain-data checkpoint ({_last_line(exc)}). "
            "reidmodels never unpickles objects; use a checkpoint written by `reidmodels train`"
        ) from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise ValueError(f"{path}: not a reidmodels checkpoint (no 'model' state)")
    return saved


def _last_line(exc: Exception) -> str:
    """The line of torch's long weights_only message that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if "Unsupported" in line or "GLOBAL" in line]
    return (lines[0] if lines else str(exc).splitlines()[0])[:300]


def _resume(path: Path, model: nn.Module, resume: bool) -> dict:
    if not (resume and path.is_file()):
        return {}
    saved = read_checkpoint(path)
    model.load_state_dict(saved["model"])
    keep = ("epochs_done", "stage", "log", "step", "optimizer", "scaler", "position")
    return {k: saved[k] for k in keep if k in saved}


def _write_log(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "stage", "epoch", "loss"])
        writer.writeheader()
        for step, row in enumerate(rows, start=1):
            writer.writerow({"step": step, **row})


# --- evaluation -----------------------------------------------------------------


def load_trained(checkpoint: str | Path, device: torch.device) -> tuple[Method, dict]:
    """The trained method of a run folder (or checkpoint file), in eval mode, and its facts."""
    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (run `reidmodels train` first)")
    saved = read_checkpoint(path)
    if "method" not in saved:
        raise ValueError(f"{path}: written by an older reidmodels (no method name); train again")
    method = get_method(saved["method"])
    size = tuple(saved["recipe"]["image_size"])
    model = method.build(
        saved["facts"], backbone=saved["backbone"], pretrained=None, image_size=size, **saved["options"]
    )
    model.load_state_dict(saved["model"])
    info = {k: saved[k] for k in ("method", "recipe", "config", "facts")} | {"sha256": _file_hash(path)}
    return model.to(device).eval(), info


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@torch.no_grad()
def extract_features(model: Method, dataset: ShardDataset, config: EvalConfig, device: torch.device, collate: Collate):
    """The method's test features (one row per item) and its predictions (or None)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, num_workers=config.workers, collate_fn=collate
    )
    features, predictions = [], []
    for batch in loader:
        x = _inputs(batch, device, stats=model.pixel_stats)
        feature, predicted = model.test_outputs(x, view=batch["view"].to(device))
        features.append(feature.float().cpu().numpy())
        if predicted is not None:
            predictions.append(predicted.cpu().numpy())
    return np.concatenate(features), (np.concatenate(predictions) if predictions else None)


HEADLINE = ("rank1", "rank5", "rank10", "mAP", "mINP", "chance_mAP", "queries")


def _write_protocol_metrics(folder: Path, protocols: dict[str, dict]) -> None:
    """``<protocol>.json`` per protocol, the same numeric keys in each: `dvc metrics show`
    then gives one row per (run, protocol) instead of one column per protocol and field."""
    folder.mkdir(exist_ok=True)
    for name, m in protocols.items():  # names passed the manifest's protocol-name rule (a-z, 0-9, _, -)
        (folder / f"{name}.json").write_text(json.dumps({k: m[k] for k in HEADLINE}, indent=2) + "\n")


def evaluate(config: EvalConfig) -> dict:
    device = _device(config.device)
    model, info = load_trained(config.checkpoint, device)
    recipe = info["recipe"]
    data = open_dataset(config.data)
    rows = np.unique(np.concatenate([np.concatenate([p.query, p.gallery]) for p in data.protocols.values()]))
    # the name comes from validated values only: a 16-hex version (open_dataset checks it) and our own hash
    clip_mode, clip_length = config.clip_mode or recipe["clip_mode"], config.clip_length or recipe["clip_length"]
    sampling = hashlib.sha256(json.dumps([clip_mode, clip_length]).encode()).hexdigest()[:8]
    name = f"{data.version}-{info['sha256']}-{sampling}.npz"
    cache = Path(config.cache or Path(config.out) / "features") / name
    if cache.is_file():  # features depend only on the dataset version, the checkpoint and clip sampling
        saved = np.load(cache, allow_pickle=False)
        features, predictions = saved["features"], saved["predictions"] if "predictions" in saved else None
    else:
        test = ShardDataset(
            data,
            rows=rows,
            decode="numpy",
            transform=_to_uint8_tensor(tuple(recipe["image_size"])),
            train=False,
            clip_mode=clip_mode,
            clip_length=clip_length,
        )
        collate = Collate(type(model), info["facts"])  # the attribute vocabulary the model was built with
        features, predictions = extract_features(model, test, config, device, collate)
        cache.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if predictions is None else {"predictions": predictions}
        np.savez(cache, features=features, **extra)
    full = np.zeros((len(data.index), features.shape[1]), dtype=np.float32)
    full[rows] = features
    metrics = {"dataset": data.manifest["source"], "version": data.version, "checkpoint": info["sha256"]}
    metrics["method"] = info["method"]
    cmc_rows = []
    rng = np.random.default_rng(0)
    for name in data.protocols:
        result = evaluate_protocol(full, data, name, metric=config.metric)
        chance = evaluate_protocol(rng.standard_normal(full.shape).astype(np.float32), data, name)
        metrics[name] = {
            "mAP": round(result["mAP"], 4),
            "mINP": round(result["mINP"], 4),
            "rank1": round(float(result["cmc"][0]), 4),
            "rank5": round(float(result["cmc"][min(4, len(result["cmc"]) - 1)]), 4),
            "rank10": round(float(result["cmc"][min(9, len(result["cmc"]) - 1)]), 4),
            "queries": result["queries"],
            "match": result["match"],
            "chance_mAP": round(chance["mAP"], 4),
        }
        cmc_rows += [{"protocol": name, "rank": r + 1, "cmc": round(float(v), 4)} for r, v in enumerate(result["cmc"])]
    if predictions is not None:
        metrics.update(model.extra_metrics(data, rows, predictions, full))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    _write_protocol_metrics(out / "protocols", {name: metrics[name] for name in data.protocols})
    with (out / "cmc.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["protocol", "rank", "cmc"])
        writer.writeheader()
        writer.writerows(cmc_rows)
    return metrics

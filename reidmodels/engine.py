"""Training and evaluation on reiddata shards: configs, loops, checkpoints, metrics.

``train(config)`` runs CLIP-ReID's two stages (images) or FT-CLIP (tracklets) on
identity-balanced P x K batches, with AMP on CUDA, a checkpoint per epoch (resumable)
and a CSV of losses. Under ``torchrun`` (WORLD_SIZE > 1) it runs DDP: every rank
takes disjoint batches from the sampler; only rank 0 logs and writes files.
``evaluate(config)`` extracts features once per (dataset version, checkpoint) and
reports CMC/mAP/mINP for every protocol with the protocol's match rule.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader

from reiddata import IdentityBalancedSampler, ShardDataset, open_dataset

from . import losses
from .backbone import IMAGE_SIZE, MEAN, STD, build_clip
from .cerberus import GLOBAL_GROUPS, IMAGENET_MEAN, IMAGENET_STD, PART_GROUPS, Cerberus
from .evaluation import evaluate_protocol, label_based_mean_accuracy, retrieval_metrics
from .latex import VIEWS, LATex
from .models import CLIPReID, dataset_facts, make_model, model_options

__all__ = ["EvalConfig", "TrainConfig", "evaluate", "load_config", "train"]


@dataclass
class TrainConfig:
    data: str  # a converted dataset (reiddata convert)
    out: str  # run folder: checkpoint.pt, train_log.csv, config.json
    model: str = "clip-reid"  # ft-clip (tracklets), latex (aerial-ground), cerberus (attributes + SIDs)
    backbone: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag (online) or local checkpoint (cerberus: torchvision resnet50)
    image_size: list[int] = field(default_factory=lambda: list(IMAGE_SIZE))
    p: int = 16
    k: int = 4
    stage1_epochs: int = 60  # clip-reid: ID text tokens
    epochs: int = 60  # image encoder (clip-reid stage 2, ft-clip)
    lr: float = 5e-6
    stage1_lr: float = 3.5e-4
    weight_decay: float = 1e-4
    prompt_tokens: int = 4
    triplet_margin: float | None = 0.3  # None: soft margin
    label_smoothing: float = 0.1
    clip_length: int = 8  # tracklets: frames per training clip (sparse temporal sampling)
    clip_mode: str = "restricted"
    workers: int = 2
    device: str = "auto"  # auto: CUDA when present
    amp: bool = True  # only on CUDA
    seed: int = 0
    resume: bool = True
    checkpoint_every: int | None = None  # also checkpoint every N steps, mid-epoch (resumes exactly there)
    trace: bool = False  # write trace-rank<r>.jsonl: each step's sample keys and loss, per rank
    max_steps_per_epoch: int | None = None  # for smoke runs
    optimizer: str = "adamw"  # or adam
    passes_per_epoch: int = 1  # identity-balanced passes (every identity once each) per epoch
    warmup_epochs: int = 0  # linear warm-up from lr / 100
    cosine: bool = False  # cosine decay to min_lr after the warm-up
    min_lr: float = 1.6e-6
    pad: int = 0  # pad then random crop back (pixels)
    random_erasing: float = 0.0  # probability per image
    prompts: int = 15  # latex: deep prompts per layer (AG-ReID.v1 15, v2 128, CARGO 256)
    shared_tokens: int = 8  # latex: K shared text tokens (v1 and CARGO 8, v2 16)
    full: bool = False  # latex-full: the CLIP image encoder trains too, at backbone_lr
    backbone_lr: float = 5e-6
    attribute_smoothing: float = 0.1


@dataclass
class EvalConfig:
    data: str
    checkpoint: str  # a run folder or its checkpoint.pt
    out: str  # metrics.json, cmc.csv
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    clip_length: int = 8
    clip_mode: str = "restricted"
    metric: str = "cosine"
    cache: str | None = None  # feature cache folder (default: <out>/features)


# A method's own defaults, under what the section sets: LATex's paper hyper-parameters.
MODEL_DEFAULTS = {
    "latex": {
        "optimizer": "adam",
        "lr": 3.5e-4,
        "weight_decay": 0.1,
        "warmup_epochs": 5,
        "cosine": True,
        "p": 16,
        "k": 8,
        "epochs": 120,
        "pad": 10,
        "random_erasing": 0.5,
    },
    # Cerberus: Adam, warm-up from 1% then cosine, 16 ids x 4, 384x128, flip + erasing;
    # 120 x 4 identity passes ~ the paper's 24k iterations on Market-1501 (751 ids / 16).
    "cerberus": {
        "optimizer": "adam",
        "lr": 3.5e-4,
        "weight_decay": 5e-4,
        "warmup_epochs": 10,
        "cosine": True,
        "p": 16,
        "k": 4,
        "image_size": [384, 128],
        "epochs": 120,
        "passes_per_epoch": 4,
        "random_erasing": 0.5,
    },
}


def load_config(cls, path: str | Path, section: str, **overrides):
    """A config dataclass from a YAML file's ``section`` (a params.yaml), with overrides;
    keys the section leaves out take the model's defaults (``MODEL_DEFAULTS``), then the
    dataclass's."""
    import yaml

    values = dict(yaml.safe_load(Path(path).read_text()).get(section) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if cls is TrainConfig:
        values = {**MODEL_DEFAULTS.get(values.get("model", ""), {}), **values}
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

    def transform(image: np.ndarray) -> torch.Tensor:
        resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(resized).permute(2, 0, 1).contiguous()

    return transform


class Collate:
    """What training and feature extraction use of a batch: pixels, label, pid, camid,
    view index and attribute value indices (-1 where a sample has none).

    (The default collate cannot batch ``attributes``, absent on distractors.)
    """

    def __init__(self, names: list[str] = (), values: list[list[str]] = (), sid_groups: list[str] = ()) -> None:
        self.names = list(names)
        self.lookup = [{v: i for i, v in enumerate(vs)} for vs in values]
        self.sid_groups = list(sid_groups)

    def __call__(self, items: list[dict]) -> dict:
        out = {k: torch.as_tensor([item[k] for item in items]) for k in ("label", "pid", "camid")}
        out["key"] = [item["key"] for item in items]
        out["view"] = torch.as_tensor([VIEWS.index(item["view"]) for item in items])
        if self.names:
            out["attributes"] = torch.as_tensor(
                [
                    [
                        lk[item["attributes"][n]] if "attributes" in item else -1
                        for n, lk in zip(self.names, self.lookup)
                    ]
                    for item in items
                ]
            )
        if self.sid_groups:
            out["sid"] = torch.as_tensor(
                [[item["sid"][g] if "sid" in item else -1 for g in self.sid_groups] for item in items]
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
    flip: bool,
    generator: torch.Generator | None,
    pad: int = 0,
    erasing: float = 0.0,
    stats: tuple = (MEAN, STD),
) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) or clips (N, T, 3, H, W) on ``device``.

    Train-time augmentation on the device, per sample (per tracklet: the whole clip):
    horizontal flip, zero padding + random crop back, random erasing (Zhong et al.).
    """
    x = batch["image"] if "image" in batch else torch.stack(batch["frames"], dim=1)
    x = x.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(stats[0], device=device).view(3, 1, 1)
    std = torch.tensor(stats[1], device=device).view(3, 1, 1)
    x = (x - mean) / std
    n, shape = x.shape[0], [1] * (x.dim() - 1)
    if flip:
        mask = torch.rand(n, generator=generator).to(device) < 0.5
        x = torch.where(mask.view(-1, *shape), x.flip(-1), x)
    if pad:
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x.flatten(0, -4), (pad, pad, pad, pad)).view(*x.shape[:-2], h + 2 * pad, w + 2 * pad)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, ..., dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    if erasing:
        x = _random_erasing(x, erasing, generator)
    return x


def _pixel_stats(model: nn.Module) -> tuple:
    """Input normalisation of the model's backbone: CLIP's, or ImageNet's for Cerberus's ResNet-50."""
    return (IMAGENET_MEAN, IMAGENET_STD) if isinstance(model, Cerberus) else (MEAN, STD)


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
    if rank == 0:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    size = tuple(config.image_size)
    data = open_dataset(config.data)
    video = data.kind == "video"
    if video != (config.model == "ft-clip"):
        raise ValueError(f"model {config.model} does not fit a dataset of kind {data.kind} (use ft-clip for tracklets)")
    facts = dataset_facts(data)
    options = _model_options(config, facts)
    train_set = ShardDataset(
        data,
        "train",
        decode="numpy",
        transform=_to_uint8_tensor(size),
        clip_mode=config.clip_mode,
        clip_length=config.clip_length,
        seed=config.seed,
    )
    num_classes = facts["num_classes"]  # train labels are contiguous from 0
    sampler = IdentityBalancedSampler(
        train_set.labels, p=config.p, k=config.k, seed=config.seed, rank=rank, world_size=world
    )
    loader = StatefulDataLoader(  # its state_dict is the sampler's and workers' position
        train_set,
        batch_sampler=sampler,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        collate_fn=_collate(config.model, facts),
    )
    model = _build(config, num_classes, options)
    model.to(device)
    stages = ([("stage1", config.stage1_epochs)] if isinstance(model, CLIPReID) else []) + [("stage2", config.epochs)]
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
    for stage, epochs in stages:
        first = done.get(stage, 0)
        if first >= epochs:
            continue
        groups = _parameter_groups(model, stage, config)
        kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
        optimizer = kind(groups, weight_decay=config.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        if state.get("stage") == stage and "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state.get("scaler", {}))
        wrapped = _wrap(model, device, world)
        text = _all_text_features(model, device) if stage == "stage2" and isinstance(model, CLIPReID) else None
        for epoch in range(first, epochs):
            train_set.set_epoch(epoch)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * _lr_factor(epoch, epochs, config, group["initial_lr"])
            model.train()
            resume = position if position and (position["stage"], position["epoch"]) == (stage, epoch) else None
            total, steps = (resume["loss_total"], resume["steps"]) if resume else (0.0, 0)
            batches = _epoch_batches(loader, sampler, epoch, config, rank, f"{stage} {epoch + 1}/{epochs}", resume)
            for passed, batch in batches:
                x = _inputs(
                    batch,
                    device,
                    flip=True,
                    generator=generator,
                    pad=config.pad,
                    erasing=config.random_erasing,
                    stats=_pixel_stats(model),
                )
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    loss = _loss(model, wrapped, stage, x, batch, device, text, config)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
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
                        _save(out, model, optimizer, progress, num_classes, config, options)
            position = None
            mean = _mean_across_ranks(total / max(steps, 1), device, world)
            log_rows.append({"stage": stage, "epoch": epoch + 1, "loss": round(mean, 6)})
            done = dict(done, **{stage: epoch + 1})
            if rank == 0:
                progress = {"epochs_done": done, "stage": stage, "log": log_rows, "step": step}
                _save(out, model, optimizer, progress | {"scaler": scaler.state_dict()}, num_classes, config, options)
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


def _model_options(config: TrainConfig, facts: dict) -> dict:
    """Constructor options, saved in the checkpoint to rebuild the model for evaluation."""
    if config.model == "clip-reid":
        return {"prompt_tokens": config.prompt_tokens}
    if config.model == "latex":
        return model_options("latex", facts, prompts=config.prompts, shared_tokens=config.shared_tokens)
    return model_options(config.model, facts)


def _build(config: TrainConfig, num_classes: int, options: dict) -> nn.Module:
    if config.model == "cerberus":  # its own ResNet-50, ImageNet weights from a local file
        return make_model("cerberus", None, num_classes, pretrained=config.pretrained, **options)
    backbone = build_clip(config.backbone, pretrained=config.pretrained, image_size=tuple(config.image_size))
    return make_model(config.model, backbone, num_classes, **options)


def _collate(kind: str, facts: dict) -> Collate:
    if kind == "latex":
        return Collate(facts["attribute_names"], facts["attribute_values"])
    if kind == "cerberus":
        return Collate(sid_groups=list(GLOBAL_GROUPS + PART_GROUPS))
    return Collate()


FROZEN_BIASES = ("bottleneck.bias", "bottleneck_v.bias", "bottleneck_t.bias")  # BNNeck: no learned shift


def _parameter_groups(model: nn.Module, stage: str, config: TrainConfig) -> list[dict]:
    """What learns, and at which rate.

    CLIP-ReID stage 1: only the ID text tokens. CLIP-ReID stage 2 and FT-CLIP: the image
    encoder and head. LATex: prompts, PACG, MLPs, shared tokens, BNs and classifiers,
    CLIP frozen; LATex-full adds the CLIP image encoder at ``backbone_lr``.
    """
    base = config.stage1_lr if stage == "stage1" else config.lr
    slow = []
    for name, p in model.named_parameters():
        if stage == "stage1":
            learn = name == "ctx"
        elif isinstance(model, Cerberus):
            learn = True
        elif isinstance(model, LATex):
            learn = not name.startswith("backbone.") or (config.full and name.startswith("backbone.clip.visual"))
            if learn and name.startswith("backbone."):
                slow.append(p)
        else:
            learn = name != "ctx" and (name.startswith("backbone.clip.visual") or name.startswith("head"))
        p.requires_grad_(
            learn
            and not name.endswith("bottleneck.bias")
            and not name.endswith("bottleneck_v.bias")
            and not name.endswith("bottleneck_t.bias")
        )
    slow_ids = {id(p) for p in slow}
    fast = [p for p in model.parameters() if p.requires_grad and id(p) not in slow_ids]
    groups = [{"params": fast, "lr": base, "initial_lr": base}]
    if slow:
        groups.append({"params": slow, "lr": config.backbone_lr, "initial_lr": config.backbone_lr})
    return groups


def _lr_factor(epoch: int, epochs: int, config: TrainConfig, base: float) -> float:
    """Linear warm-up from 1% over ``warmup_epochs``, then constant or cosine to ``min_lr``."""
    if epoch < config.warmup_epochs:
        return 0.01 + 0.99 * epoch / config.warmup_epochs
    if not config.cosine:
        return 1.0
    span = max(epochs - config.warmup_epochs, 1)
    progress = (epoch - config.warmup_epochs) / span
    floor = min(config.min_lr / base, 1.0)
    return floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress))


def _wrap(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


@torch.no_grad()
def _all_text_features(model: CLIPReID, device: torch.device) -> torch.Tensor:
    model.eval()
    return model.text_features().float()


def _loss(model, wrapped, stage, x, batch: dict, device, text, config: TrainConfig) -> torch.Tensor:
    labels = batch["label"].to(device)
    if isinstance(model, Cerberus):
        return model.loss(wrapped(x), labels, batch["sid"].to(device))
    if isinstance(model, LATex):
        out = wrapped(x, batch["view"].to(device))
        attributes = batch["attributes"].to(device) if "attributes" in batch else None
        return model.loss(out, labels, attributes, smoothing=config.attribute_smoothing)
    if stage == "stage1":  # frozen image encoder; text tokens learn to match their identity's images
        out = wrapped(x, labels)
        image = nn.functional.normalize(out["image"].float(), dim=1)
        texts = nn.functional.normalize(out["text"].float(), dim=1)
        scale = model.backbone.clip.logit_scale.exp().detach()
        return losses.supcon(image * scale, texts, labels, labels) + losses.supcon(texts * scale, image, labels, labels)
    out = wrapped(x)
    loss = losses.cross_entropy_smooth(out["logits"].float(), labels, config.label_smoothing)
    loss = loss + losses.triplet_hard(out["feature"].float(), labels, config.triplet_margin)
    if text is not None:
        scale = model.backbone.clip.logit_scale.exp().detach()
        loss = loss + losses.image_text_ce(out["feature"].float(), text, labels, scale)
    return loss


def _mean_across_ranks(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / world


def _epoch_batches(loader, sampler, epoch: int, config: TrainConfig, rank: int, desc: str, resume: dict | None):
    """``(pass, batch)`` for one epoch: ``passes_per_epoch`` identity-balanced passes, each its own
    sampler epoch, cut at ``max_steps_per_epoch``; from a mid-epoch ``resume`` position when given."""
    steps = resume["steps"] if resume else 0
    for r in range(resume["pass"] if resume else 0, config.passes_per_epoch):
        sampler.set_epoch(epoch * config.passes_per_epoch + r)
        if resume and r == resume["pass"]:
            loader.load_state_dict(resume["loader"])  # the next iter goes on after its last batch
        for batch in _progress(loader, rank, desc):
            if config.max_steps_per_epoch is not None and steps >= config.max_steps_per_epoch:
                return
            steps += 1
            yield r, batch


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
    if rank != 0:
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


def _save(out: Path, model, optimizer, state: dict, num_classes: int, config: TrainConfig, options: dict) -> None:
    tmp = out / "checkpoint.pt.tmp"
    torch.save(
        {
            "model": model.state_dict(),
            **_plain(
                {
                    "optimizer": optimizer.state_dict(),  # schedules may leave numpy floats in its lr
                    "num_classes": num_classes,
                    "model_options": options,
                    "config": dataclasses.asdict(config),
                    **state,
                }
            ),
        },
        tmp,
    )
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


def load_trained(checkpoint: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (run `reidmodels train` first)")
    saved = read_checkpoint(path)
    config = saved["config"]
    backbone = None
    if config["model"] != "cerberus":
        backbone = build_clip(config["backbone"], pretrained=None, image_size=tuple(config["image_size"]))
    model = make_model(config["model"], backbone, saved["num_classes"], **saved["model_options"])
    model.load_state_dict(saved["model"])
    return model.to(device).eval(), {"config": config, "sha256": _file_hash(path)}


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@torch.no_grad()
def extract_features(
    model: nn.Module, dataset: ShardDataset, config: EvalConfig, device: torch.device, collate: Collate
) -> tuple[np.ndarray, np.ndarray | None]:
    """Retrieval features, and for LATex the predicted attribute values (-1 columns otherwise)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, num_workers=config.workers, collate_fn=collate
    )
    features, predictions = [], []
    for batch in loader:
        x = _inputs(batch, device, flip=False, generator=None, stats=_pixel_stats(model))
        out = model(x, batch["view"].to(device)) if isinstance(model, LATex) else model(x)
        features.append(out["bn"].float().cpu().numpy())
        if isinstance(model, Cerberus):  # nearest SID prototype per group
            sids = model.predict_sids(out["partial"])
            predictions.append(torch.stack([sids[g] for g in model.group_names], dim=1).cpu().numpy())
        elif "attribute_logits" in out:
            predictions.append(torch.stack([lg.argmax(1) for lg in out["attribute_logits"]], dim=1).cpu().numpy())
    return np.concatenate(features), (np.concatenate(predictions) if predictions else None)


def evaluate(config: EvalConfig) -> dict:
    device = _device(config.device)
    model, info = load_trained(config.checkpoint, device)
    data = open_dataset(config.data)
    size = tuple(info["config"]["image_size"])
    rows = np.unique(np.concatenate([np.concatenate([p.query, p.gallery]) for p in data.protocols.values()]))
    facts = dataset_facts(data)
    # the name comes from validated values only: a 16-hex version (open_dataset checks it) and our own hash
    cache = Path(config.cache or Path(config.out) / "features") / f"{data.version}-{info['sha256']}.npz"
    if cache.is_file():  # features depend only on the dataset version and the checkpoint
        saved = np.load(cache, allow_pickle=False)
        features, predictions = saved["features"], saved["predictions"] if "predictions" in saved else None
    else:
        test = ShardDataset(
            data,
            rows=rows,
            decode="numpy",
            transform=_to_uint8_tensor(size),
            train=False,
            clip_mode=config.clip_mode,
            clip_length=config.clip_length,
        )
        features, predictions = extract_features(model, test, config, device, _collate(info["config"]["model"], facts))
        cache.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if predictions is None else {"predictions": predictions}
        np.savez(cache, features=features, **extra)
    full = np.zeros((len(data.index), features.shape[1]), dtype=np.float32)
    full[rows] = features
    metrics = {"dataset": data.manifest["source"], "version": data.version, "checkpoint": info["sha256"]}
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
    if predictions is not None and isinstance(model, Cerberus):
        metrics["par"] = _par_metrics(model, data, rows, predictions)
        metrics["aps"] = _aps_metrics(model, data, full)
    elif predictions is not None:
        metrics["attribute_accuracy"] = _attribute_accuracy(data, rows, predictions, facts)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    with (out / "cmc.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["protocol", "rank", "cmc"])
        writer.writeheader()
        writer.writerows(cmc_rows)
    return metrics


def _attribute_accuracy(data, rows: np.ndarray, predictions: np.ndarray, facts: dict) -> dict:
    """Per attribute: the share of labelled test samples whose predicted value is right."""
    labels = data.index.column("attributes").to_pylist()
    out = {}
    for t, (name, values) in enumerate(zip(facts["attribute_names"], facts["attribute_values"])):
        pairs = [(values.index(labels[r][name]), predictions[i, t]) for i, r in enumerate(rows) if labels[r]]
        out[name] = round(float(np.mean([a == b for a, b in pairs])), 4) if pairs else None
    return out


def _par_metrics(model: Cerberus, data, rows: np.ndarray, predictions: np.ndarray) -> dict:
    """Pedestrian attribute recognition from the nearest SID prototypes: mA per attribute."""
    labels = data.index.column("attributes").to_pylist()
    truth, guess = [], []
    for i, r in enumerate(rows):
        if labels[r]:
            predicted = {}
            for j, g in enumerate(model.group_names):
                predicted.update(model.sid_attributes(g, int(predictions[i, j])))
            truth.append(labels[r])
            guess.append(predicted)
    per = {a: round(label_based_mean_accuracy([t[a] for t in truth], [p[a] for p in guess]), 4) for a in truth[0]}
    return {"mA": round(float(np.mean(list(per.values()))), 4), "per_attribute": per, "samples": len(truth)}


@torch.no_grad()
def aps_scores(model: Cerberus, partials: torch.Tensor, query: dict[str, str]) -> torch.Tensor:
    """Attribute search: per gallery sample, the mean over the query's groups of the best
    cosine to a prototype consistent with the query (``partials``: (N, groups, D), unit)."""
    scores = []
    for g, protos in model.query_prototypes(query).items():
        j = model.group_names.index(g)
        scores.append((partials[:, j] @ torch.nn.functional.normalize(protos.float(), dim=1).T).amax(1))
    return torch.stack(scores).mean(0)


def _aps_metrics(model: Cerberus, data, features: np.ndarray) -> dict:
    """APS over the first protocol's labelled gallery: every attribute combination in it as
    a query (full), and the same queries with one group unknown (partial)."""
    labels = data.index.column("attributes").to_pylist()
    gallery = [r for r in next(iter(data.protocols.values())).gallery if labels[r]]
    groups = len(model.group_names)
    unit = (features[gallery] * np.sqrt(groups)).astype(np.float32)  # undo the 1/sqrt(groups) of "bn"
    partials = torch.from_numpy(unit).view(len(gallery), groups, -1)
    combos = sorted({tuple(sorted(labels[r].items())) for r in gallery})
    out = {}
    for name, hidden in [("full", None)] + [(f"without_{g}", g) for g in model.group_names]:
        unknown = set(model.group_attributes[hidden]) if hidden else set()
        scores, relevant = [], []
        for combo in combos:
            query = {a: v for a, v in combo if a not in unknown}
            scores.append(aps_scores(model, partials, query).numpy())
            relevant.append([all(labels[r][a] == v for a, v in query.items()) for r in gallery])
        result = retrieval_metrics(np.asarray(scores), np.asarray(relevant))
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    partial = [v for k, v in out.items() if k != "full"]
    out["partial_mean"] = {k: round(float(np.mean([p[k] for p in partial])), 4) for k in ("mAP", "rank1")}
    return out

"""The shape every method has, and the facts a method declares as data.

A method is an ``nn.Module`` subclass of :class:`Method` in a module of its own. It
declares its official hyper-parameters (:class:`Recipe`: batch shape, augmentation,
and per stage a :class:`StagePlan` with optimiser, schedule and epoch length), the
batch fields it needs, its pixel statistics, and implements:

- ``forward(batch, stage)``: the outputs its loss needs (one call, so DDP sees it);
- ``loss(out, batch, stage, recipe)``;
- ``trains(name, stage)``: whether parameter ``name`` learns in ``stage``;
- ``embed(x, **fields)``: the L2-normalised retrieval feature (``embed_dim`` long);
- ``build(facts, ...)`` when it is not a CLIP backbone + ``cls(backbone, num_classes)``;
- optionally ``parameter_groups`` (own rates), ``begin_stage`` (e.g. cache text
  features), ``stage_features`` (a stage trained on features computed once),
  ``test_outputs`` (predictions beside the feature) and ``extra_metrics`` (attribute
  recognition, attribute search).

The engine (``reidmodels.engine``) trains and evaluates any method through these,
and knows none by name.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIP_MEAN", "HALF", "IMAGENET_MEAN", "VIEWS", "Method", "Recipe", "StagePlan", "dataset_facts", "lr_factor"]

VIEWS = ("aerial", "ground", "wearable")  # the views reiddata writes; a batch carries the index here
CLIP_MEAN = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))  # OpenAI CLIP's
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # to [-1, 1]: CLIP-ReID's and LATex's configs
IMAGENET_MEAN = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SAMPLER_NAMES = ("identity", "chunks", "balanced")  # reiddata's RandomIdentitySampler, ChunkIdentitySampler, ...


@dataclass(frozen=True)
class StagePlan:
    """One training stage: what the official code's optimiser and scheduler do, per epoch.

    ``schedule``:
    - ``constant``: ``lr`` after a linear warm-up from ``warmup_from * lr``;
    - ``warmup-cosine``: linear warm-up from ``warmup_from * lr`` over ``warmup_epochs``
      (epoch counted from 0), then a cosine over the remaining epochs to ``min_lr``;
    - ``multistep``: that warm-up, then x ``gamma`` at each of ``milestones``
      (``WarmupMultiStepLR`` stepped at the start of each epoch: epoch e, counted
      from 1, is its step e);
    - ``cosine``: timm's ``CosineLRScheduler`` stepped with the epoch counted from 1
      (warm-up from ``warmup_from * lr`` for ``warmup_epochs``, then
      ``min_lr + (lr - min_lr) (1 + cos(pi e / epochs)) / 2``).

    ``batches``: ``images`` or ``identities``: P x K batches from the recipe's sampler
    (the official one: ``passes`` passes of it, each walking every item once; the
    ``balanced`` one: about train images / (P K) batches for ``images``, ``passes``
    times every identity once for ``identities``), or ``features`` (features computed once by the method's
    ``stage_features`` on unaugmented inputs, shuffled batches of ``feature_batch``,
    ceil(N / batch) per epoch).
    """

    epochs: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    weight_decay_bias: float | None = None  # None: weight_decay
    weight_decay_norm: float | None = None  # BN / LayerNorm parameters (fastreid's rule); None: as the others
    bias_lr_factor: float = 1.0
    schedule: str = "constant"
    warmup_epochs: int = 0
    warmup_from: float = 0.01
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0
    batches: str = "images"
    passes: int = 1
    feature_batch: int = 64
    # features stage: "plain" (every train item once, test transform: CLIP-ReID) or "sampler" (one
    # pass of the recipe's sampler with the training transform and random frames: VSLA-CLIP);
    # its batches per epoch: "ceil" (N / batch rounded up) or "floor" (the partial one dropped)
    feature_source: str = "plain"
    feature_rounding: str = "ceil"
    warmup_iters: int = 0  # a linear warm-up over the stage's first N iterations (fast-reid's, LATex)
    grad_clip: float | None = None  # L2 norm per parameter (LATex)


@dataclass(frozen=True)
class Recipe:
    """A method's official hyper-parameters. ``stages`` in training order."""

    stages: dict[str, StagePlan]
    p: int = 16
    k: int = 4
    image_size: tuple[int, int] = (256, 128)
    flip: float = 0.5
    pad: int = 0
    random_erasing: float = 0.0
    label_smoothing: float = 0.1
    triplet_margin: float | None = 0.3
    clip_length: int = 8
    clip_mode: str = "restricted"
    # identity: the official image RandomIdentitySampler (every item once an epoch, in chunks of K);
    # chunks: the official video one (VSLA-CLIP); balanced: every identity once a pass
    sampler: str = "identity"
    transforms: str = "clip-reid"  # the official input pipeline: a key of reidmodels.transforms.PIPELINES
    extra: dict = field(default_factory=dict)  # method-specific numbers (loss weights...)

    def __post_init__(self) -> None:
        from ..transforms import PIPELINES

        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler {self.sampler!r} unknown: use one of {SAMPLER_NAMES}")
        if self.transforms not in PIPELINES:
            raise ValueError(f"transforms {self.transforms!r} unknown: use one of {sorted(PIPELINES)}")

    def with_overrides(self, overrides: dict) -> Recipe:
        """This recipe with ``overrides`` (a params.yaml ``hparams`` section): top-level
        fields, and ``stages: {name: {field: value}}``. Unknown names are errors."""
        top = {f.name for f in dataclasses.fields(self)} - {"stages"}
        unknown = sorted(set(overrides) - top - {"stages"})
        if unknown:
            raise ValueError(f"unknown hparams {unknown}: valid are {sorted(top | {'stages'})}")
        stages = dict(self.stages)
        for name, changes in (overrides.get("stages") or {}).items():
            if name not in stages:
                raise ValueError(f"unknown stage {name!r}: this method's stages are {list(stages)}")
            valid = {f.name for f in dataclasses.fields(StagePlan)}
            bad = sorted(set(changes) - valid)
            if bad:
                raise ValueError(f"unknown stage fields {bad}: valid are {sorted(valid)}")
            if "milestones" in changes:
                changes = {**changes, "milestones": tuple(changes["milestones"])}
            stages[name] = dataclasses.replace(stages[name], **changes)
        rest = {k: v for k, v in overrides.items() if k != "stages"}
        if "extra" in rest:  # the method's own weights and rates: named ones only, the rest kept
            bad = sorted(set(rest["extra"]) - set(self.extra))
            if bad:
                raise ValueError(f"unknown extra hparams {bad}: this method's are {sorted(self.extra)}")
            rest["extra"] = {**self.extra, **rest["extra"]}
        if "image_size" in rest:
            rest["image_size"] = tuple(rest["image_size"])
        return dataclasses.replace(self, stages=stages, **rest)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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


class Method(nn.Module):
    """The base of every method (see the module docstring)."""

    name: ClassVar[str]
    kind: ClassVar[str] = "image"  # the dataset kind it trains on: image | video
    recipe: ClassVar[Recipe]
    fields: ClassVar[tuple[str, ...]] = ()  # batch fields beyond images and labels: view, attributes, sid
    sid_groups: ClassVar[tuple[str, ...]] = ()  # the order of the ``sid`` columns, when it needs them
    pixel_stats: ClassVar[tuple] = CLIP_MEAN

    @classmethod
    def build(cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, **options) -> Method:
        """The method sized for a dataset's ``facts`` (see ``dataset_facts``). This default
        builds a CLIP backbone and calls ``cls(backbone, num_classes, **options)``."""
        from ..backbone import build_clip

        clip = build_clip(backbone, pretrained=pretrained, image_size=tuple(image_size))
        return cls(clip, facts["num_classes"], **options)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.recipe.stages)

    @property
    def embed_dim(self) -> int:
        """The size of ``embed``'s output."""
        raise NotImplementedError

    def trains(self, name: str, stage: str) -> bool:
        raise NotImplementedError

    def trainable_parameters(self, stage: str | None = None) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of what learns in ``stage`` (None: in any stage)."""
        stages = self.stages if stage is None else (stage,)
        for name, p in self.named_parameters():
            if any(self.trains(name, s) for s in stages):
                yield name, p

    def parameter_groups(self, stage: str, recipe: Recipe) -> list[dict]:
        """Optimiser groups: biases at ``bias_lr_factor`` x lr with ``weight_decay_bias``
        (the official ReID codebases' rule); methods add their own rates by overriding."""
        plan = recipe.stages[stage]
        norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
        norms = {id(p) for m in self.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
        groups = []
        for name, p in self.trainable_parameters(stage):
            bias = "bias" in name  # as the official optimisers test it: attention in_proj_bias too
            lr = plan.lr * (plan.bias_lr_factor if bias else 1.0)
            decay = plan.weight_decay
            if id(p) in norms and plan.weight_decay_norm is not None:
                decay = plan.weight_decay_norm
            if bias and plan.weight_decay_bias is not None:
                decay = plan.weight_decay_bias
            groups.append({"params": [p], "lr": lr, "initial_lr": lr, "weight_decay": decay})
        return groups

    def begin_stage(self, stage: str) -> None:
        """Called before a stage's first epoch (after a resume too)."""

    def stage_features(self, stage: str, x: torch.Tensor, batch: dict) -> torch.Tensor:
        """For a ``features`` stage: one feature per sample, computed once, no augmentation."""
        raise NotImplementedError(f"{self.name} has no feature stage {stage!r}")

    def forward(self, batch: dict, stage: str) -> dict:
        raise NotImplementedError

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor, **fields) -> torch.Tensor:
        raise NotImplementedError

    def test_outputs(self, x: torch.Tensor, **fields) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The retrieval feature (``embed``) and per-sample predictions evaluated beside it
        (attribute values, SIDs) or None."""
        return self.embed(x, **fields), None

    def extra_metrics(self, data, rows: np.ndarray, predictions: np.ndarray, features: np.ndarray) -> dict:
        """Metrics beyond retrieval from ``predictions`` of the test ``rows`` (and ``features``,
        one row per index row of ``data``)."""
        return {}


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def dataset_facts(data) -> dict:
    """What a method needs from a converted dataset: train identities and images,
    attribute values, SID groups and, per SID, how many training persons have it."""
    schema = data.manifest.get("attributes")
    train = data.manifest["splits"]["train"]
    facts = {
        "kind": data.kind,
        "num_classes": int(train["ids"]),
        "train_samples": int(train["samples"]),
        "attribute_classes": [len(a["values"]) for a in schema["attributes"]] if schema else None,
        "attribute_names": [a["name"] for a in schema["attributes"]] if schema else [],
        "attribute_values": [a["values"] for a in schema["attributes"]] if schema else [],
        "groups": schema["groups"] if schema else [],
        # the cameras of the labelled splits (distractors' -1 left out): CLIP-ReID's SIE sizes by them
        "cameras": sorted({c for s in data.manifest["splits"].values() for c in s["cameras"] if c >= 0}),
    }
    if schema:
        rows = [r for r in data.index.select(["split", "pid", "sid"]).to_pylist() if r["split"] == "train" and r["sid"]]
        persons = {r["pid"]: r["sid"] for r in rows}
        facts["persons"] = len(persons)
        facts["sid_counts"] = {
            g["name"]: np.bincount([s[g["name"]] for s in persons.values()], minlength=g["num_sids"]).tolist()
            for g in schema["groups"]
        }
    return facts

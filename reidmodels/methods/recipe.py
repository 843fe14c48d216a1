"""A method's official hyper-parameters as data: :class:`Recipe` and, per stage, :class:`StagePlan`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["SAMPLER_NAMES", "Recipe", "StagePlan"]

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
    # loss weights and the triplet's distance, read by several methods
    id_weight: float = 1.0  # identity cross-entropy
    triplet_weight: float = 1.0
    i2t_weight: float = 1.0  # image-to-text cross-entropy (CLIP-ReID's stage 2)
    supcon_weight: float = 0.0  # image-text SupCon in the identity stage (VSLA-CLIP, PromptSG)
    triplet_metric: str = "euclidean"  # or "cosine" (VSLA-CLIP)
    extra: dict = field(default_factory=dict)  # numbers only one method reads (its own rates, smoothing)

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

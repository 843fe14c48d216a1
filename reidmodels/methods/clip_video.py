"""The frame-mean CLIP video baseline (the VSLA-CLIP paper's "baseline", Table 3).

The CLIP image encoder on each sampled frame of a tracklet, the projected features
averaged over time, a BNNeck, label-smoothed CE + batch-hard triplet; no text. The
whole image encoder trains, on CLIP-ReID stage 2's schedule (the baseline's own is
not published). Test feature: the frame mean before the BN, L2-normalised.
"""

from __future__ import annotations

import torch

from .. import losses
from ..backbone import CLIPBackbone
from .base import Method, Recipe, unit
from .clip_reid import CLIPReID
from .heads import bnneck

__all__ = ["CLIPVideo"]


class CLIPVideo(Method):
    name = "clip-video"
    kind = "video"
    recipe = Recipe(  # VSLA-CLIP's sampling and input pipeline (the baseline of its code)
        stages={"train": CLIPReID.recipe.stages["stage2"]},
        p=8,
        k=4,
        clip_length=8,
        random_erasing=0.5,
        sampler="chunks",
        transforms="vsla-clip",
    )

    def __init__(self, backbone: CLIPBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck, self.classifier = bnneck(backbone.embed_dim, num_classes)

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def trains(self, name: str, stage: str) -> bool:
        return name.startswith(("backbone.clip.visual.", "bottleneck", "classifier"))

    def _pooled(self, clips: torch.Tensor) -> torch.Tensor:
        """``clips`` (N, T, 3, H, W) -> the frame mean of the projected features (N, D)."""
        n, t = clips.shape[:2]
        return self.backbone.image_features(clips.flatten(0, 1))["proj"].view(n, t, -1).mean(1)

    def forward(self, batch: dict, stage: str) -> dict:
        feature = self._pooled(batch["x"])
        return {"feature": feature, "logits": self.classifier(self.bottleneck(feature))}

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        labels = batch["label"]
        ce = losses.cross_entropy_smooth(out["logits"].float(), labels, recipe.label_smoothing)
        return ce + losses.triplet_hard(out["feature"].float(), labels, recipe.triplet_margin)

    def embed(self, x: torch.Tensor, **fields) -> torch.Tensor:
        return unit(self._pooled(x))

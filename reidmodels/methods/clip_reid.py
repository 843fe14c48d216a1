"""CLIP-ReID (Li et al., AAAI 2023) as the official code (``Syliz517/CLIP-ReID``) trains it.

- Stage 1: both encoders frozen; per identity, 4 text tokens inside "A photo of a X X
  X X person." learn with SupCon image->text + text->image (temperature 1, raw
  features) against the projected class features of every train image, computed
  **once** without augmentation; random batches of 64 over those features.
- Stage 2: the image encoder and two BNNeck heads train: BN(768)->Linear on the
  ``ln_post`` class token and BN(512)->Linear on its projection (BN biases frozen,
  bias-free classifiers). Loss: 0.25 x (CE_ls + CE_ls) + batch-hard triplet (margin
  0.3, Euclidean) summed over the penultimate-block class token, the ``ln_post`` class
  token and the projection + CE_ls of the raw dot products between the projection
  and every identity's (frozen) text feature.
- Test feature: [``ln_post`` class token ; projection], 768 + 512 = 1280-d, **before**
  the BNs, L2-normalised (cosine).
- Schedules (per epoch, as the official code steps them): stage 1 Adam 3.5e-4, wd
  1e-4, 120 epochs, cosine with 5 warm-up epochs from 1e-5, floor 1e-6; stage 2 Adam
  5e-6, wd 1e-4, biases at 2x lr, warm-up 10 epochs from 0.1x, x0.1 at 30 and 50, 60
  epochs, an epoch of about images / 64 batches of 16 ids x 4. Inputs normalised to
  [-1, 1]; flip, pad 10 + crop, random erasing 0.5.
- Learnable parameters: the image encoder (86,140,416 for ViT-B-16 at 256x128) +
  3,328 N (2,048 N text tokens, 1,280 N classifiers) + 1,280 BN weights.

Deviation: the official code adds camera embeddings (SIE) on some datasets; METHODS.md's
parameter count leaves them out, and so do we.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import losses
from ..backbone import CLIPBackbone, build_clip
from .base import HALF, Method, Recipe, StagePlan, unit
from .heads import bnneck
from .prompts import PromptLearner

__all__ = ["CLIPReID"]


class CLIPReID(Method):
    name = "clip-reid"
    kind = "image"
    pixel_stats = HALF
    recipe = Recipe(
        stages={
            "stage1": StagePlan(
                epochs=120,
                lr=3.5e-4,
                weight_decay=1e-4,
                schedule="cosine",
                warmup_epochs=5,
                warmup_from=1e-5 / 3.5e-4,
                min_lr=1e-6,
                batches="features",
                feature_batch=64,
            ),
            "stage2": StagePlan(
                epochs=60,
                lr=5e-6,
                weight_decay=1e-4,
                weight_decay_bias=1e-4,
                bias_lr_factor=2.0,
                schedule="multistep",
                warmup_epochs=10,
                warmup_from=0.1,
                milestones=(30, 50),
                batches="images",
            ),
        },
        p=16,
        k=4,
        pad=10,
        random_erasing=0.5,
        id_weight=0.25,
    )

    def __init__(
        self,
        backbone: CLIPBackbone,
        num_classes: int,
        *,
        prompt_tokens: int = 4,
        cameras: tuple[int, ...] = (),
        sie_coe: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        # CLIP-ReID+SIE (MODEL.SIE_CAMERA): a learned embedding per camera, times SIE_COE, added to
        # the class token before the positional embedding (model/clip/model.py:223-224), trunc-normal .02
        self.sie_coe = sie_coe
        self.register_buffer("camera_ids", torch.tensor(sorted(cameras), dtype=torch.long))
        shape = (len(cameras), backbone.width)
        self.cv_embed = nn.Parameter(nn.init.trunc_normal_(torch.zeros(shape), std=0.02)) if cameras else None
        self.prompt_learner = self.make_prompt_learner(backbone, num_classes, prompt_tokens)
        self.bottleneck, self.classifier = bnneck(backbone.width, num_classes)
        self.bottleneck_proj, self.classifier_proj = bnneck(backbone.embed_dim, num_classes)
        self.register_buffer("text", torch.zeros(0), persistent=False)  # every identity's, in stage 2

    @classmethod
    def build(
        cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, stride: int | None = None,
        sie_camera: bool = False, sie_coe: float = 1.0, **options,
    ) -> CLIPReID:  # fmt: skip
        """Options of the paper's best ViT rows (CLIP-ReID+SIE+OLP, the README's MSMT17 command):
        ``stride: 12`` (overlapping patches, MODEL.STRIDE_SIZE) and ``sie_camera: true`` with
        ``sie_coe: 1.0`` (MODEL.SIE_CAMERA, MODEL.SIE_COE)."""
        clip = build_clip(backbone, pretrained=pretrained, image_size=tuple(image_size), stride=stride)
        if sie_camera:
            options |= {"cameras": tuple(facts["cameras"]), "sie_coe": sie_coe}
        return cls(clip, facts["num_classes"], **options)

    def class_shift(self, camid: torch.Tensor | None) -> torch.Tensor | None:
        """The SIE camera embedding of each sample (None without SIE)."""
        if not len(self.camera_ids):
            return None
        if camid is None:
            raise ValueError("this model has camera embeddings (SIE): give the camera of every image (camid)")
        index = torch.searchsorted(self.camera_ids, camid.to(self.camera_ids.device))
        known = (index < len(self.camera_ids)) & (self.camera_ids[index.clamp(max=len(self.camera_ids) - 1)] == camid)
        if not bool(known.all()):
            raise ValueError(f"cameras {sorted(set(camid[~known].tolist()))} were not among the training cameras")
        return self.sie_coe * self.cv_embed[index]

    @staticmethod
    def make_prompt_learner(backbone: CLIPBackbone, num_classes: int, tokens: int) -> nn.Module:
        return PromptLearner(backbone, num_classes, tokens)

    def image(self, batch: dict) -> dict:
        """The three features stage 2 reads: ``penultimate``, ``cls`` (``ln_post``), ``proj``."""
        return self.backbone.image_features(batch["x"], class_shift=self.class_shift(batch.get("camid")))

    @property
    def embed_dim(self) -> int:
        return self.backbone.width + self.backbone.embed_dim

    def trains(self, name: str, stage: str) -> bool:
        if stage == "stage1":
            return name.startswith("prompt_learner.")
        return name.startswith(("backbone.clip.visual.", "bottleneck", "classifier", "cv_embed"))

    @torch.no_grad()
    def begin_stage(self, stage: str) -> None:
        if stage == "stage2":  # the text side is frozen from here: every identity's feature, once
            labels = torch.arange(self.prompt_learner.ctx.shape[0], device=self.prompt_learner.ctx.device)
            self.text = torch.cat([self.prompt_learner(self.backbone, chunk) for chunk in labels.split(64)]).float()

    @torch.no_grad()
    def stage_features(self, stage: str, x: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.backbone.image_features(x, class_shift=self.class_shift(batch.get("camid")))["proj"].float()

    def forward(self, batch: dict, stage: str) -> dict:
        if stage == "stage1":
            return {"image": batch["feature"], "text": self.prompt_learner(self.backbone, batch["label"])}
        f = self.image(batch)
        return {
            "logits": [
                self.classifier(self.bottleneck(f["cls"])),
                self.classifier_proj(self.bottleneck_proj(f["proj"])),
            ],
            "features": [f["penultimate"], f["cls"], f["proj"]],
            "proj": f["proj"],
        }

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        labels = batch["label"]
        if stage == "stage1":
            image, text = out["image"].float(), out["text"].float()
            return losses.supcon(image, text, labels, labels) + losses.supcon(text, image, labels, labels)
        eps, margin, metric = recipe.label_smoothing, recipe.triplet_margin, recipe.triplet_metric
        ce = sum(losses.cross_entropy_smooth(lg.float(), labels, eps) for lg in out["logits"])
        triplet = sum(losses.triplet_hard(f.float(), labels, margin, metric=metric) for f in out["features"])
        image, text = out["proj"].float(), self.text[labels]
        i2t = losses.cross_entropy_smooth(image @ self.text.T, labels, eps)  # raw dot products
        total = recipe.id_weight * ce + recipe.triplet_weight * triplet + recipe.i2t_weight * i2t
        if recipe.supcon_weight:  # VSLA-CLIP: SupCon both ways in stage 2 too
            total = total + recipe.supcon_weight * (
                losses.supcon(image, text, labels, labels) + losses.supcon(text, image, labels, labels)
            )
        return total

    def embed(self, x: torch.Tensor, *, camid: torch.Tensor | None = None, **fields) -> torch.Tensor:
        f = self.backbone.image_features(x, class_shift=self.class_shift(camid))
        return unit(torch.cat([f["cls"], f["proj"]], dim=1))  # 1280-d for ViT-B-16, before the BNs

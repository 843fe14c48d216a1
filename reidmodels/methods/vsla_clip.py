"""VSLA-CLIP (the G2A-VReID paper; official code ``FHR-L/VSLA-CLIP``): a CLIP image
encoder adapted to video by two small adapters per block, and platform-bridge prompts.

- Per block k of the frozen image encoder, both adapters read the un-normalised stream:
  ``x' = x + MSA(LN1(x)) + CFAA(x)`` and ``y = x' + MLP(LN2(x')) + IFA(x')``.
  IFA (intra-frame) = Up(QuickGELU(Down(x))), width -> 256 -> width. CFAA
  (cross-frame attention) = Up'(TA(Down'(x))): TA is a 4-head attention over the T
  frames at each token position, with no temporal embedding, so it is blind to frame
  order. PyTorch's default initialisation, as the code.
- Platform-bridge prompts (``pbp=True``): ``pbp_length`` tokens per platform (ground,
  UAV: from each sample's view) in each of the first ``pbp_depth`` blocks, fresh per
  block; the block's attention reads [LN1(x) ; prompts] as keys and values and the
  prompts' own outputs are dropped. Paper best: depth 3, length 16.
- Text: "[SOS] P1..P8 S1..S4 P9..P16 . [EOS]": 16 shared and 4 per-identity tokens (std
  0.02), no words, through the frozen causal text encoder.
- Stage 1 trains the prompt tokens with SupCon image<->text (temperature 1, raw) against
  one feature per tracklet computed once with the adapters and prompts off (the frame
  mean of the projected class token). Stage 2 trains the adapters, the platform
  prompts, the BN weights and two classifiers (BN(width) -> Linear on the ``ln_post``
  class token, BN(512) -> Linear on its projection): 0.25 x the two label-smoothed
  CEs + a cosine-distance batch-hard triplet (margin 0.3) on each of the three
  frame-mean features (penultimate-block class token, ``ln_post`` class token,
  projection) + label-smoothed CE of the raw dot products with every identity's text
  feature + SupCon image->text and text->image.
- Test feature: [frame-mean ``ln_post`` class token ; frame-mean projection], 1280-d
  with ViT-B-16, before the BNs.
- Tunable parameters with ViT-B-16: IFA 12 x 394,240 = 4,730,880; CFAA 12 x 657,408 =
  7,888,896; prompt learner 2,048 N + 8,192; the heads and the platform prompts
  (2 x depth x length x 768) come on top.

Deviations: random erasing erases one rectangle for the whole clip (the code draws
one per frame); the code's loader also shuffles the sampled frames of a training clip,
which the order-blind CFAA and the frame mean make irrelevant.
"""

from __future__ import annotations

import dataclasses

import torch
from open_clip.transformer import QuickGELU
from torch import nn

from ..backbone import CLIPBackbone
from .base import IMAGENET_MEAN, VIEWS, Recipe, StagePlan, unit
from .clip_reid import CLIPReID
from .prompts import SplitPromptLearner

__all__ = ["CrossFrameAdapter", "IntraFrameAdapter", "VSLACLIP"]

AERIAL = VIEWS.index("aerial")


class IntraFrameAdapter(nn.Module):
    """IFA: width -> hidden -> width with QuickGELU, beside each block's MLP."""

    def __init__(self, width: int, hidden: int = 256) -> None:
        super().__init__()
        self.down, self.act, self.up = nn.Linear(width, hidden), QuickGELU(), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class CrossFrameAdapter(nn.Module):
    """CFAA: width -> hidden, attention across the T frames at each token position, -> width."""

    def __init__(self, width: int, hidden: int = 256, heads: int = 4) -> None:
        super().__init__()
        self.down, self.up = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x`` (B T, L, width), the T frames of each tracklet consecutive."""
        h = self.down(x)
        bt, length, d = h.shape
        h = h.view(bt // frames, frames, length, d).transpose(1, 2).reshape(-1, frames, d)  # (B L, T, d)
        h = self.attention(h, h, h, need_weights=False)[0]
        h = h.view(bt // frames, length, frames, d).transpose(1, 2).reshape(bt, length, d)
        return self.up(h)


class VSLACLIP(CLIPReID):
    name = "vsla-clip"
    kind = "video"
    fields = ("view",)
    pixel_stats = IMAGENET_MEAN
    recipe = Recipe(
        stages={
            # CLIP-ReID's stage-1 plan, but its features come from one pass of the video sampler with
            # the training transform and random frames, floor(N / 64) batches an epoch
            # (make_video_dataloader.py:34-41, processor_videoreid_stage1.py:59,68)
            "stage1": dataclasses.replace(
                CLIPReID.recipe.stages["stage1"], feature_source="sampler", feature_rounding="floor"
            ),
            "stage2": StagePlan(
                epochs=120,
                lr=1e-4,
                weight_decay=2.5e-4,  # configs/adapter/vit_adapter.yml
                weight_decay_bias=1e-4,
                bias_lr_factor=2.0,
                schedule="multistep",
                warmup_epochs=10,
                warmup_from=0.1,
                milestones=(60, 90),
                batches="images",
            ),
        },
        p=8,
        k=4,
        clip_length=8,
        clip_mode="restricted",
        random_erasing=0.5,
        sampler="chunks",
        transforms="vsla-clip",
        id_weight=0.25,
        supcon_weight=1.0,
        triplet_metric="cosine",
    )

    def __init__(
        self,
        backbone: CLIPBackbone,
        num_classes: int,
        *,
        adapter_width: int = 256,
        adapter_heads: int = 4,
        pbp: bool = False,
        pbp_depth: int = 3,
        pbp_length: int = 16,
        adapters: bool = True,
    ) -> None:
        super().__init__(backbone, num_classes)  # the backbone, the prompt learner, the two BNNeck heads
        width, layers = backbone.width, len(backbone.visual.transformer.resblocks)
        layers = layers if adapters else 0  # FT-CLIP: none
        self.ifa_adapters = nn.ModuleList(IntraFrameAdapter(width, adapter_width) for _ in range(layers))
        self.cfaa_adapters = nn.ModuleList(
            CrossFrameAdapter(width, adapter_width, adapter_heads) for _ in range(layers)
        )
        self.pbp_prompts = None
        if pbp:  # (depth, platforms: ground, UAV, length, width)
            self.pbp_prompts = nn.Parameter(
                nn.init.trunc_normal_(torch.empty(pbp_depth, 2, pbp_length, width), std=0.02)
            )

    @staticmethod
    def make_prompt_learner(backbone: CLIPBackbone, num_classes: int, tokens: int) -> nn.Module:
        return SplitPromptLearner(backbone, num_classes)

    def image(self, batch: dict) -> dict:
        return self.encode(batch["x"], batch.get("view"))

    def official_parameter_count(self) -> int:
        """Every parameter as the official model holds it: no token-embedding table (its prompts
        are built from stored embeddings) and no logit scale; 139,997,184 for G2A-VReID's 930
        identities without platform prompts (the paper's 140.0M), PBP adding 73,728."""
        dropped = ("backbone.clip.token_embedding.", "backbone.clip.logit_scale")
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(dropped))

    def trains(self, name: str, stage: str) -> bool:
        if stage == "stage1":
            return name.startswith("prompt_learner.")
        return name.startswith(("ifa_adapters.", "cfaa_adapters.", "pbp_prompts", "bottleneck", "classifier"))

    # --- the adapted image encoder ------------------------------------------------------

    def encode(self, clips: torch.Tensor, views: torch.Tensor | None = None, *, adapted: bool = True) -> dict:
        """Frame means of the penultimate-block class token, the ``ln_post`` class token and
        its projection, for ``clips`` (B, T, 3, H, W). ``adapted=False``: the plain encoder."""
        adapted = adapted and len(self.ifa_adapters) > 0
        b, t = clips.shape[:2]
        visual = self.backbone.visual
        x = self.backbone.embed_patches(clips.flatten(0, 1))
        blocks = visual.transformer.resblocks
        platform = None
        if views is not None and self.pbp_prompts is not None:
            platform = (views == AERIAL).long().repeat_interleave(t)  # 0 ground, 1 UAV, per frame
        penultimate = x[:, 0]
        for k, block in enumerate(blocks):
            h = block.ln_1(x)
            keys = h
            if platform is not None and k < self.pbp_prompts.shape[0]:
                keys = torch.cat([h, self.pbp_prompts[k, platform].to(h.dtype)], dim=1)  # prompt outputs are not made
            attended = block.ls_1(block.attn(h, keys, keys, need_weights=False)[0])
            y = x + attended + (self.cfaa_adapters[k](x, t) if adapted else 0)
            x = y + block.ls_2(block.mlp(block.ln_2(y))) + (self.ifa_adapters[k](y, t) if adapted else 0)
            if k == len(blocks) - 2:
                penultimate = x[:, 0]
        cls = visual.ln_post(x[:, 0])
        proj = cls @ visual.proj
        mean = lambda f: f.view(b, t, -1).mean(1)  # noqa: E731
        return {"penultimate": mean(penultimate), "cls": mean(cls), "proj": mean(proj)}

    # --- training -------------------------------------------------------------------------

    @torch.no_grad()
    def stage_features(self, stage: str, x: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.encode(x, adapted=False)["proj"].float()

    def embed(self, x: torch.Tensor, *, view: torch.Tensor | None = None, **fields) -> torch.Tensor:
        f = self.encode(x, view)
        return unit(torch.cat([f["cls"], f["proj"]], dim=1))  # before the BNs

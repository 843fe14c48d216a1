"""LATex (Hu et al., "Leveraging Attribute-based Text Knowledge for Aerial-Ground Person
Re-Identification"): attribute-aware prompts, prompted attribute classifiers, a coupled
prompt template.

- **AIE**: the frozen CLIP image encoder with deep learnable prompts (a fresh set in
  every block: 15 for AG-ReID.v1, 128 for v2, 256 for CARGO); the class token is the
  global feature and the last block's first T = 15 prompt outputs are the attribute
  tokens (both through CLIP's ``ln_post`` and projection).
- **PACG** (datasets with attributes): per attribute t, ``z = Linear([g ; a_t])``;
  ``z`` attends (multi-head, per sample) to the other attribute tokens; a residual
  FFN; BN; a classifier over the attribute's values (label-smoothed CE). An MLP per
  attribute maps ``[g ; a_t]`` to that attribute's text token.
- **CPT**: "A [view] view photo of a [K shared tokens] [T attribute tokens] person."
  with the view word from the sample (UAV / CCTV / wearable), as token embeddings into
  the frozen CLIP text encoder; the end-token feature is the text feature.
- Retrieval feature: [BN(image feature) ; BN(text feature)].

Where the paper and the official code (kevinhu314/LATex) differ, this follows the
paper: attention within each sample (the code's ``nn.MultiheadAttention`` without
``batch_first`` attends across the batch), a residual FFN (absent in the code), the
same BN on the text feature in training and test (the code skips it at test), and
CLIP's ``ln_post`` on the image tokens (the code omits it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..backbone import CLIPBackbone, build_clip
from .base import HALF, VIEWS, Method, Recipe, StagePlan, unit

__all__ = ["LATex", "VIEW_WORDS"]

VIEW_WORDS = {"aerial": "UAV", "ground": "CCTV", "wearable": "wearable"}  # the template's word per view
ATTRIBUTE_PROMPTS = 15


class AttributeClassifier(nn.Module):
    """PACG for one attribute: fuse [g ; a_t], attend to the other attributes, FFN, classify."""

    def __init__(self, dim: int, classes: int, heads: int = 8) -> None:
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.bn = nn.BatchNorm1d(dim)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, g: torch.Tensor, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        z = self.fuse(torch.cat([g, own], dim=1)).unsqueeze(1)  # (N, 1, D)
        context, _ = self.attention(z, others, others, need_weights=False)  # per sample: (N, 1, D)
        z = z + context
        z = z + self.ffn(self.norm(z))
        return self.classifier(self.bn(z.squeeze(1)))


class LATex(Method):
    name = "latex"
    kind = "image"
    fields = ("view", "attributes")
    pixel_stats = HALF
    # The paper's hyper-parameters (the official code's are the next change: weight decay
    # 1e-4, gradient clipping 5.0, warm-up 2000 iterations; see METHODS.md).
    recipe = Recipe(
        stages={
            "train": StagePlan(
                epochs=120,
                lr=3.5e-4,
                weight_decay=0.1,
                schedule="warmup-cosine",
                warmup_epochs=5,
                warmup_from=0.01,
                min_lr=1.6e-6,
                batches="images",
            )
        },
        p=16,
        k=8,
        pad=10,
        random_erasing=0.5,
        extra={"backbone_lr": 5e-6, "attribute_smoothing": 0.1},
    )

    def __init__(
        self,
        backbone: CLIPBackbone,
        num_classes: int,
        *,
        attribute_classes: Sequence[int] | None,
        attribute_names: Sequence[str] = (),
        attribute_values: Sequence[Sequence[str]] = (),
        prompts: int = 15,
        shared_tokens: int = 8,
        heads: int = 8,
        full: bool = False,
    ) -> None:
        super().__init__()
        self.full = full  # latex-full: the CLIP image encoder trains too, at extra["backbone_lr"]
        self.attribute_names, self.attribute_values = list(attribute_names), [list(v) for v in attribute_values]
        if prompts < ATTRIBUTE_PROMPTS:
            raise ValueError(f"LATex needs at least {ATTRIBUTE_PROMPTS} prompts per layer, got {prompts}")
        self.backbone = backbone
        dim, width = backbone.embed_dim, backbone.width
        layers = len(backbone.visual.transformer.resblocks)
        self.prompts = nn.Parameter(torch.empty(layers, prompts, width))
        nn.init.trunc_normal_(self.prompts, std=0.02)
        self.attribute_classes = list(attribute_classes) if attribute_classes else []
        text_width = backbone.clip.token_embedding.embedding_dim
        if self.attribute_classes:
            if len(self.attribute_classes) != ATTRIBUTE_PROMPTS:
                raise ValueError(f"LATex uses {ATTRIBUTE_PROMPTS} attributes, the dataset has {len(attribute_classes)}")
            self.pacg = nn.ModuleList(AttributeClassifier(dim, c, heads) for c in self.attribute_classes)
            self.to_text = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, text_width))
                for _ in range(ATTRIBUTE_PROMPTS)
            )
        else:  # CARGO: no attributes, the attribute tokens go straight into the template
            self.pacg = nn.ModuleList()
            self.to_text = nn.ModuleList([nn.Linear(dim, text_width)]) if dim != text_width else nn.ModuleList()
        self.shared = nn.Parameter(torch.randn(shared_tokens, text_width) * 0.02)
        self._templates(shared_tokens)
        self.bottleneck_v, self.bottleneck_t = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        for bn in (self.bottleneck_v, self.bottleneck_t):
            bn.bias.requires_grad_(False)
        self.classifier_v = nn.Linear(dim, num_classes, bias=False)
        self.classifier_t = nn.Linear(dim, num_classes, bias=False)
        for c in (self.classifier_v, self.classifier_t):
            nn.init.normal_(c.weight, std=0.001)

    def _templates(self, shared: int) -> None:
        """Token embeddings of the template per view, with the slots for K + T learned tokens."""
        b = self.backbone
        slots = shared + ATTRIBUTE_PROMPTS
        x_token = int(b.tokenize(["X"])[0, 1])
        prefixes, suffixes, eots, starts = [], [], [], []
        for view in VIEWS:
            ids = b.tokenize([f"A {VIEW_WORDS[view]} view photo of a {' '.join(['X'] * slots)} person."])
            start = int((ids[0] == x_token).nonzero()[0])
            with torch.no_grad():
                embedded = b.token_embeddings(ids)[0]
            prefixes.append(embedded[:start])
            suffixes.append(embedded[start + slots :])
            eots.append(int(ids.argmax(-1)))
            starts.append(start)
        if len(set(starts)) != 1 or len({len(x) for x in suffixes}) != 1:
            raise ValueError("every view word must tokenize to one token for the shared template layout")
        self.register_buffer("text_prefix", torch.stack(prefixes))  # (views, start, width)
        self.register_buffer("text_suffix", torch.stack(suffixes))
        self.register_buffer("text_eot", torch.tensor(eots))

    def attribute_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.encode_image_prompts(images, self.prompts, ATTRIBUTE_PROMPTS)

    @classmethod
    def build(cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, **options) -> LATex:
        clip = build_clip(backbone, pretrained=pretrained, image_size=tuple(image_size))
        named = {k: facts[k] for k in ("attribute_classes", "attribute_names", "attribute_values")}
        return cls(clip, facts["num_classes"], **named, **options)

    @property
    def embed_dim(self) -> int:
        return 2 * self.backbone.embed_dim  # [BN(image) ; BN(text)]

    def trains(self, name: str, stage: str) -> bool:
        if name in ("bottleneck_v.bias", "bottleneck_t.bias"):
            return False  # BNNeck: no learned shift
        return not name.startswith("backbone.") or (self.full and name.startswith("backbone.clip.visual."))

    def parameter_groups(self, stage: str, recipe: Recipe) -> list[dict]:
        groups = super().parameter_groups(stage, recipe)
        backbone = {id(p) for n, p in self.named_parameters() if n.startswith("backbone.")}
        for group in groups:  # latex-full: the CLIP image encoder at its own, slower rate
            if id(group["params"][0]) in backbone:
                group["lr"] = group["initial_lr"] = recipe.extra["backbone_lr"]
        return groups

    def forward(self, batch: dict, stage: str) -> dict:
        return self.outputs(batch["x"], batch["view"])

    def outputs(self, images: torch.Tensor, views: torch.Tensor) -> dict:
        g, tokens = self.attribute_tokens(images)  # (N, D), (N, T, D)
        out: dict = {}
        if self.attribute_classes:
            pairs = torch.cat([g.unsqueeze(1).expand_as(tokens), tokens], dim=2)  # (N, T, 2D)
            words = torch.stack([mlp(pairs[:, t]) for t, mlp in enumerate(self.to_text)], dim=1)
            logits = []
            for t, classifier in enumerate(self.pacg):
                others = torch.cat([tokens[:, :t], tokens[:, t + 1 :]], dim=1)
                logits.append(classifier(g, tokens[:, t], others))
            out["attribute_logits"] = logits
        else:
            words = self.to_text[0](tokens) if len(self.to_text) else tokens
        n = images.shape[0]
        embedded = torch.cat(
            [
                self.text_prefix[views],
                self.shared.unsqueeze(0).expand(n, -1, -1).to(words.dtype),
                words,
                self.text_suffix[views],
            ],
            dim=1,
        )
        text = self.backbone.encode_text_embeddings(embedded, self.text_eot[views])
        bn_v, bn_t = self.bottleneck_v(g), self.bottleneck_t(text)
        out.update(
            feature_v=g,
            feature_t=text,
            logits_v=self.classifier_v(bn_v),
            logits_t=self.classifier_t(bn_t),
            bn=torch.cat([bn_v, bn_t], dim=1),
        )
        return out

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        """0.25 (CE_v + CE_t) + soft-margin triplet on both features + the attribute CEs."""
        labels, attributes = batch["label"], batch.get("attributes")
        smoothing = recipe.extra["attribute_smoothing"]
        total = 0.25 * (
            F.cross_entropy(out["logits_v"].float(), labels) + F.cross_entropy(out["logits_t"].float(), labels)
        )
        total = total + losses.triplet_hard(out["feature_v"].float(), labels, margin=None)
        total = total + losses.triplet_hard(out["feature_t"].float(), labels, margin=None)
        if attributes is not None and "attribute_logits" in out:
            for t, logits in enumerate(out["attribute_logits"]):
                known = attributes[:, t] >= 0  # distractors have no attributes
                if known.any():
                    total = total + losses.cross_entropy_smooth(logits[known].float(), attributes[known, t], smoothing)
        return total

    def embed(self, x: torch.Tensor, *, view: torch.Tensor, **fields) -> torch.Tensor:
        return unit(self.outputs(x, view)["bn"])

    def test_outputs(self, x: torch.Tensor, *, view: torch.Tensor, **fields) -> tuple:
        out = self.outputs(x, view)
        logits = out.get("attribute_logits")
        predicted = torch.stack([lg.argmax(1) for lg in logits], dim=1) if logits else None
        return unit(out["bn"]), predicted

    def extra_metrics(self, data, rows, predictions, features) -> dict:
        """Per attribute: the share of labelled test samples whose predicted value is right."""
        if predictions is None:
            return {}
        labels = data.index.column("attributes").to_pylist()
        out = {}
        for t, (name, values) in enumerate(zip(self.attribute_names, self.attribute_values)):
            pairs = [(values.index(labels[r][name]), predictions[i, t]) for i, r in enumerate(rows) if labels[r]]
            out[name] = round(float(np.mean([a == b for a, b in pairs])), 4) if pairs else None
        return {"attribute_accuracy": out}

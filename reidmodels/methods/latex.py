"""LATex (Hu et al., "Leveraging Attribute-based Text Knowledge for Aerial-Ground Person
Re-Identification") as its official code (``kevinhu314/LATex``) trains it, by default.

- **AIE**: the frozen CLIP image encoder with deep prompts: ``prompts`` fresh tokens in
  each of blocks 1-11 (15 for AG-ReID.v1, 128 for v2, 256 for CARGO), their outputs
  dropped, and a separate 15 in block 12 whose outputs are the attribute tokens. The
  class token and the attribute tokens go through the projection without ``ln_post``.
  The global feature is ``BN_v(g)``.
- **PACG** (datasets with attributes), per attribute t
  (``baseline_clip_visual_text.py``, ``AttrClassifier_one``): ``fc1([BN_v(g) ; a_t])``
  plus ``channel_fc`` (Linear 14 -> 1) over a multi-head attention whose queries are
  the 14 other attribute tokens and whose keys and values are ``BN_v(g)``; then
  QuickGELU -> BN -> Linear and a label-smoothed CE (0.1). The official
  ``nn.MultiheadAttention`` is not batch-first and gets (batch, 14, dim): it attends
  **across the samples of the batch** at each of the 14 positions; we do the same
  (within one sample there is one key, and the attention is constant).
- An MLP per attribute (Linear 1024 -> 512, QuickGELU, Linear 512 -> 512) maps
  ``[BN_v(g) ; a_t]`` to a text token.
- **CPT**: "a {uav|cctv|wearable} view photo of a [K shared] [15 attribute] x person"
  (the code's 16 placeholders for 15 slots leave a literal x; no full stop) through the
  frozen text encoder built **without** the causal mask; the end-token feature.
- Losses: per side (image, text) 0.25 x CE (no smoothing) through a BNNeck head after
  ``BN_v`` / ``BN_t``, and a soft-margin batch-hard triplet on ``BN_v(g)`` /
  ``BN_t(text)``; the attribute CEs. Test feature: ``[BN_v(g) ; text]`` (the code skips
  ``BN_t`` at test).
- Trainable with ViT-B-16 at 199 ids (AG-ReID.v1): 35,852,089; the official model has
  35,867,449, the difference being a BatchNorm its text-token MLP builds and never
  uses (15 x 1,024); the paper reports 35.97M.

``reading="paper"`` builds what the paper's text describes instead: attention of the
fused token over the other attribute tokens within each sample, a residual FFN with
its LayerNorm, CLIP's ``ln_post``, MLPs on the raw g, the causal text mask, ``BN_t`` at
test (43.75M trainable on AG-ReID.v1). The paper's weight decay 0.1 is a recipe
override: ``hparams: {stages: {train: {weight_decay: 0.1}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from .. import losses
from ..backbone import CLIPBackbone, build_clip
from .base import HALF, VIEWS, Method, Recipe, StagePlan, unit
from .heads import BNNeck, bnneck
from .prompts import PLACEHOLDER, template_slots
from .solver import at_rate

__all__ = ["LATex", "VIEW_WORDS"]

VIEW_WORDS = {"aerial": "UAV", "ground": "CCTV", "wearable": "Wearable"}  # the template's word per view
ATTRIBUTE_PROMPTS = 15


class AttributeClassifier(nn.Module):
    """PACG for one attribute, as the official code (see the module docstring)."""

    def __init__(self, dim: int, classes: int, heads: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, dim)
        self.attention = nn.MultiheadAttention(dim, heads)  # not batch-first, as the code
        self.channel_fc = nn.Linear(ATTRIBUTE_PROMPTS - 1, 1)
        self.head = nn.Sequential(QuickGELU(), nn.BatchNorm1d(dim), nn.Linear(dim, classes))

    def forward(self, pair: torch.Tensor, others: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``pair`` [BN_v(g) ; a_t] (N, 2D), ``others`` the other attribute tokens (N, 14, D), ``g`` BN_v(g)."""
        keys = g.unsqueeze(1).expand_as(others)
        mixed, _ = self.attention(others, keys, keys, need_weights=False)  # (N, 14, D) read as (L=N, batch=14)
        return self.head(self.fc1(pair) + self.channel_fc(mixed.transpose(1, 2)).squeeze(-1))


class PaperAttributeClassifier(nn.Module):
    """PACG as the paper's text reads: the fused token attends to the other attribute
    tokens within its sample, a residual FFN, BN, classifier."""

    def __init__(self, dim: int, classes: int, heads: int = 8) -> None:
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.bn = nn.BatchNorm1d(dim)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, pair: torch.Tensor, others: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        z = self.fuse(pair).unsqueeze(1)  # (N, 1, D)
        context, _ = self.attention(z, others, others, need_weights=False)
        z = z + context
        z = z + self.ffn(self.norm(z))
        return self.classifier(self.bn(z.squeeze(1)))


class LATex(Method):
    name = "latex"
    kind = "image"
    fields = ("view", "attributes")
    pixel_stats = HALF
    # The released configs (configs/v1/CLIP_visual_text.yml): Adam 3.5e-4, weight decay
    # 1e-4 (5e-4 on norms and biases, fastreid's defaults), cosine to 1.6e-6 after a
    # warm-up from 1% over 2000 iterations (fast-reid's WARMUP_ITERS: about 22 epochs of
    # AG-ReID.v1, 5 of v2), gradient clipping per parameter at 5.0, 120 epochs of 16 ids x 8
    # (v2: 32 x 4), flip, pad 10, fast-reid's erasing 0.5.
    recipe = Recipe(
        stages={
            "train": StagePlan(
                epochs=120,
                lr=3.5e-4,
                weight_decay=1e-4,
                weight_decay_bias=5e-4,
                weight_decay_norm=5e-4,
                schedule="warmup-cosine",
                warmup_epochs=0,
                warmup_iters=2000,
                warmup_from=0.01,
                min_lr=1.6e-6,
                batches="images",
                grad_clip=5.0,
            )
        },
        p=16,
        k=8,
        pad=10,
        random_erasing=0.5,
        transforms="fast-reid",
        id_weight=0.25,
        extra={"backbone_lr": 5e-6, "id_smoothing": 0.0, "attribute_smoothing": 0.1},
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
        reading: str = "code",
    ) -> None:
        super().__init__()
        if reading not in ("code", "paper"):
            raise ValueError(f"reading must be 'code' (the official code, default) or 'paper', got {reading!r}")
        self.full, self.reading = full, reading  # full: the image encoder trains too, at extra["backbone_lr"]
        self.attribute_names, self.attribute_values = list(attribute_names), [list(v) for v in attribute_values]
        self.backbone = backbone
        dim, width = backbone.embed_dim, backbone.width
        layers = len(backbone.visual.transformer.resblocks)
        self.prompts = nn.Parameter(nn.init.trunc_normal_(torch.empty(layers - 1, prompts, width), std=0.02))
        self.attribute_prompts = nn.Parameter(nn.init.trunc_normal_(torch.empty(ATTRIBUTE_PROMPTS, width), std=0.02))
        self.attribute_classes = list(attribute_classes) if attribute_classes else []
        text_width = backbone.clip.token_embedding.embedding_dim
        if self.attribute_classes:
            if len(self.attribute_classes) != ATTRIBUTE_PROMPTS:
                raise ValueError(f"LATex uses {ATTRIBUTE_PROMPTS} attributes, the dataset has {len(attribute_classes)}")
            pacg = AttributeClassifier if reading == "code" else PaperAttributeClassifier
            act = QuickGELU if reading == "code" else nn.GELU
            self.pacg = nn.ModuleList(pacg(dim, c, heads) for c in self.attribute_classes)
            self.to_text = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * dim, dim), act(), nn.Linear(dim, text_width))
                for _ in range(ATTRIBUTE_PROMPTS)
            )
        else:  # CARGO: no attributes, the attribute tokens go straight into the template
            self.pacg = nn.ModuleList()
            self.to_text = nn.ModuleList([nn.Linear(dim, text_width)]) if dim != text_width else nn.ModuleList()
        self.shared = nn.Parameter(torch.randn(shared_tokens, text_width) * 0.02)
        self._templates(shared_tokens)
        self.bottleneck_v, self.bottleneck_t = BNNeck(dim), BNNeck(dim)
        if reading == "code":  # fastreid's EmbeddingHead: its own BNNeck before each classifier
            self.head_bn_v, self.classifier_v = bnneck(dim, num_classes)
            self.head_bn_t, self.classifier_t = bnneck(dim, num_classes)
        else:
            self.classifier_v = nn.Linear(dim, num_classes, bias=False)
            self.classifier_t = nn.Linear(dim, num_classes, bias=False)
            for c in (self.classifier_v, self.classifier_t):
                nn.init.normal_(c.weight, std=0.001)

    def _templates(self, shared: int) -> None:
        """Token embeddings of the template per view, with the slots for K + 15 learned tokens."""
        b = self.backbone
        slots = shared + ATTRIBUTE_PROMPTS
        placeholders = " ".join([PLACEHOLDER] * (slots + 1 if self.reading == "code" else slots))
        ending = "person" if self.reading == "code" else "person."
        prefixes, suffixes, eots, starts = [], [], [], []
        for view in VIEWS:
            cut = template_slots(b, f"A {VIEW_WORDS[view]} view photo of a {placeholders} {ending}", slots)
            prefixes.append(cut.prefix[0])
            suffixes.append(cut.suffix[0])  # the code's layout keeps one literal x here
            eots.append(int(cut.eot))
            starts.append(cut.start)
        if len(set(starts)) != 1 or len({len(x) for x in suffixes}) != 1:
            raise ValueError("every view word must tokenize to one token for the shared template layout")
        self.register_buffer("text_prefix", torch.stack(prefixes))  # (views, start, width)
        self.register_buffer("text_suffix", torch.stack(suffixes))
        self.register_buffer("text_eot", torch.tensor(eots))

    @classmethod
    def build(cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, **options) -> LATex:
        clip = build_clip(backbone, pretrained=pretrained, image_size=tuple(image_size))
        named = {k: facts[k] for k in ("attribute_classes", "attribute_names", "attribute_values")}
        return cls(clip, facts["num_classes"], **named, **options)

    @property
    def embed_dim(self) -> int:
        return 2 * self.backbone.embed_dim  # [image ; text]

    def trains(self, name: str, stage: str) -> bool:
        return not name.startswith("backbone.") or (self.full and name.startswith("backbone.clip.visual."))

    def parameter_groups(self, stage: str, recipe: Recipe) -> list[dict]:
        groups = super().parameter_groups(stage, recipe)  # latex-full: the image encoder at its own, slower rate
        return at_rate(groups, self, ("backbone.",), recipe.extra["backbone_lr"])

    def forward(self, batch: dict, stage: str) -> dict:
        return self.outputs(batch["x"], batch["view"])

    def outputs(self, images: torch.Tensor, views: torch.Tensor) -> dict:
        code = self.reading == "code"
        prompts = list(self.prompts) + [self.attribute_prompts]
        g, tokens = self.backbone.encode_image_prompts(images, prompts, ATTRIBUTE_PROMPTS, ln_post=not code)
        bn_v = self.bottleneck_v(g)
        base = bn_v if code else g  # the code feeds BN_v(g) to the classifiers and MLPs
        out: dict = {}
        if self.attribute_classes:
            pairs = torch.cat([base.unsqueeze(1).expand_as(tokens), tokens], dim=2)  # (N, 15, 2D)
            words = torch.stack([mlp(pairs[:, t]) for t, mlp in enumerate(self.to_text)], dim=1)
            out["attribute_logits"] = [
                classifier(pairs[:, t], torch.cat([tokens[:, :t], tokens[:, t + 1 :]], dim=1), base)
                for t, classifier in enumerate(self.pacg)
            ]
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
        text = self.backbone.encode_text_embeddings(embedded, self.text_eot[views], causal=not code)
        bn_t = self.bottleneck_t(text)
        if code:
            logits_v, logits_t = self.classifier_v(self.head_bn_v(bn_v)), self.classifier_t(self.head_bn_t(bn_t))
            triplet, test = (bn_v, bn_t), torch.cat([bn_v, text], dim=1)
        else:
            logits_v, logits_t = self.classifier_v(bn_v), self.classifier_t(bn_t)
            triplet, test = (g, text), torch.cat([bn_v, bn_t], dim=1)
        return out | {"logits_v": logits_v, "logits_t": logits_t, "triplet": triplet, "test": test}

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        """0.25 (CE_v + CE_t) + soft-margin triplet on both features + the attribute CEs."""
        labels, attributes, extra = batch["label"], batch.get("attributes"), recipe.extra
        ce = sum(
            losses.cross_entropy_smooth(out[k].float(), labels, extra["id_smoothing"]) for k in ("logits_v", "logits_t")
        )
        total = recipe.id_weight * ce + sum(losses.triplet_hard(f.float(), labels, margin=None) for f in out["triplet"])
        if attributes is not None and "attribute_logits" in out:
            for t, logits in enumerate(out["attribute_logits"]):
                known = attributes[:, t] >= 0  # distractors have no attributes
                if known.any():
                    smoothing = extra["attribute_smoothing"]
                    total = total + losses.cross_entropy_smooth(logits[known].float(), attributes[known, t], smoothing)
        return total

    def embed(self, x: torch.Tensor, *, view: torch.Tensor | None = None, **fields) -> torch.Tensor:
        """``view``: each image's view index (``VIEWS``); the text half of the feature depends on it."""
        return self.test_outputs(x, view=view)[0]

    def test_outputs(self, x: torch.Tensor, *, view: torch.Tensor | None = None, **fields) -> tuple:
        if view is None:
            raise ValueError("LATex's feature depends on each image's view: pass view= (indices into VIEWS)")
        out = self.outputs(x, view)
        logits = out.get("attribute_logits")
        predicted = torch.stack([lg.argmax(1) for lg in logits], dim=1) if logits else None
        return unit(out["test"]), predicted

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

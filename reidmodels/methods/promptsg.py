"""PromptSG (Yang et al., CVPR 2024): a pseudo word per pedestrian and a composed prompt,
whose text feature guides the visual encoder through multimodal interaction.

No official code is public; this follows the paper and METHODS.md:

- The CLIP image encoder trains. Its projected tokens, the class token v plus the 128
  patch tokens (512-d), are what the rest reads.
- Inversion network: Linear 512->512, ReLU, Linear, ReLU, Linear, BatchNorm1d. It
  turns v into a pseudo token s*. s* replaces the placeholder's embedding in the
  composed prompt "A photo of a s* person" (no full stop, as the paper writes it and the
  public re-implementation builds it), which goes through the frozen text encoder
  (the gradients flow through it to s*, the inversion network and the image encoder).
- Multimodal interaction: one cross-attention (512-d, 8 heads) with LN(text feature)
  as the query over LN(the 129 visual tokens), then 2 transformer blocks (512-d, 8 heads,
  MLP 2048) in CLIP's style (QuickGELU, attention initialised with std width^-0.5 as CLIP
  initialises its blocks), then LN: z. A BNNeck and a classifier follow.
  - default ``interaction="query"``: the blocks run on the attended text token alone.
    This is the paper's figure and the known re-implementation.
  - ``interaction="reweight"``: the 129 visual tokens are reweighted by the text->token
    attention and the blocks run over all of them; z is their class token.
- Loss: batch-hard triplet (margin 0.3) summed over the penultimate-block class token,
  the ``ln_post`` class token and z (the choice CLIP-ReID's code makes for its three
  features) + CE (smoothing 0.1) + 0.5 x SupCon (v -> text, text -> v).
- Adam: image encoder 5e-6, new modules 5e-5, weight decay 1e-4; 60 epochs, x0.1 at
  20 and 40; 16 x 4; 256x128; flip, pad 10, erasing 0.5 and inputs in [-1, 1]
  (CLIP-ReID's settings, which the paper does not state).
- Inference: composed (the prompt per image, z as the feature) or simplified ("A photo
  of a person", its text feature computed once). ``evaluate`` reports both: the
  composed mode per protocol, the simplified one under ``simplified``.
- Trainable without the ID head with ViT-B-16: 86,140,416 + 788,992 + 1,050,624 +
  6,304,768 + 3,072 = 94,287,872 (paper: 94M); 94,288,384 with the BNNeck's weight (512;
  its bias is frozen).
"""

from __future__ import annotations

import numpy as np
import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn

from .. import losses
from ..backbone import CLIPBackbone
from ..evaluation.ranking import evaluate_protocol
from .base import HALF, Method, Recipe, StagePlan, unit
from .heads import bnneck
from .prompts import PLACEHOLDER, template_slots
from .solver import at_rate

__all__ = ["PromptSG"]

NEW = ("inversion.", "ln_query.", "ln_tokens.", "cross.", "blocks.", "ln_final.", "bottleneck.", "classifier.")


def _clip_init(cross: nn.MultiheadAttention, blocks: nn.ModuleList, width: int) -> None:
    """CLIP's initialisation (open_clip ``TextTransformer.init_parameters``): attention
    projections std width^-0.5, output projections width^-0.5 (2 layers)^-0.5, MLP input
    (2 width)^-0.5; the cross-attention's projections as an attention's."""
    attn_std, proj_std, fc_std = width**-0.5, width**-0.5 * (2 * len(blocks)) ** -0.5, (2 * width) ** -0.5
    nn.init.normal_(cross.in_proj_weight, std=attn_std)
    nn.init.normal_(cross.out_proj.weight, std=proj_std)
    for block in blocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


class PromptSG(Method):
    name = "promptsg"
    kind = "image"
    pixel_stats = HALF
    recipe = Recipe(
        stages={
            "train": StagePlan(
                epochs=60,
                lr=5e-6,
                weight_decay=1e-4,
                schedule="multistep",
                warmup_epochs=0,
                milestones=(20, 40),
                batches="images",
            )
        },
        p=16,
        k=4,
        pad=10,
        random_erasing=0.5,
        transforms="promptsg",
        supcon_weight=0.5,
        extra={"new_lr": 5e-5},
    )

    def __init__(self, backbone: CLIPBackbone, num_classes: int, *, interaction: str = "query") -> None:
        super().__init__()
        if interaction not in ("query", "reweight"):
            raise ValueError(f"interaction must be 'query' (default) or 'reweight', got {interaction!r}")
        self.backbone, self.interaction = backbone, interaction
        dim = backbone.embed_dim
        self.inversion = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.BatchNorm1d(dim)
        )
        self.ln_query, self.ln_tokens, self.ln_final = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, 8, batch_first=True)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(dim, 8, mlp_ratio=4.0, act_layer=QuickGELU) for _ in range(2)
        )
        _clip_init(self.cross, self.blocks, dim)
        self.bottleneck, self.classifier = bnneck(dim, num_classes)
        composed = template_slots(backbone, f"A photo of a {PLACEHOLDER} person", 1)
        simplified = template_slots(backbone, "A photo of a person", 0)  # no slot: the whole text
        self.slot = composed.start
        self.register_buffer("composed", composed.embedded.clone())  # the placeholder's embedding is replaced
        self.register_buffer("simplified", simplified.embedded.clone())
        self.register_buffer("eot", torch.cat([composed.eot, simplified.eot]))
        self._simplified_text: torch.Tensor | None = None  # cached by simplified_text

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def trains(self, name: str, stage: str) -> bool:
        return name.startswith(("backbone.clip.visual.", *NEW))

    def parameter_groups(self, stage: str, recipe: Recipe) -> list[dict]:
        groups = super().parameter_groups(stage, recipe)  # the modules PromptSG adds learn 10x faster
        return at_rate(groups, self, NEW, recipe.extra["new_lr"])

    # --- the two prompts -----------------------------------------------------------------

    def composed_text(self, v: torch.Tensor) -> torch.Tensor:
        """The composed prompt's text feature per image: s* = inversion(v) in the placeholder."""
        pseudo = self.inversion(v)
        n = v.shape[0]
        tokens = self.composed.expand(n, -1, -1).clone()
        tokens[:, self.slot] = pseudo.to(tokens.dtype)
        return self.backbone.encode_text_embeddings(tokens, self.eot[:1].expand(n))

    def simplified_text(self, n: int) -> torch.Tensor:
        """The text feature of "A photo of a person" for ``n`` images: computed once (the text
        encoder is frozen and the prompt has nothing learnt), then reused."""
        if self._simplified_text is None or self._simplified_text.device != self.simplified.device:
            with torch.no_grad():
                self._simplified_text = self.backbone.encode_text_embeddings(self.simplified, self.eot[1:])
        return self._simplified_text.expand(n, -1)

    def interact(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """z from a text feature (N, D) and the 129 visual tokens (N, 129, D)."""
        kv = self.ln_tokens(tokens)
        attended, weights = self.cross(self.ln_query(text).unsqueeze(1), kv, kv, need_weights=True)
        x = attended if self.interaction == "query" else kv * weights.transpose(1, 2) * kv.shape[1]
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x[:, 0])

    # --- training and inference ----------------------------------------------------------

    def _visual(self, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
        f = self.backbone.image_features(x)
        return f, torch.cat([f["proj"].unsqueeze(1), f["tokens"]], dim=1)  # v and the 128 patches

    def forward(self, batch: dict, stage: str) -> dict:
        f, tokens = self._visual(batch["x"])
        text = self.composed_text(f["proj"])
        z = self.interact(text, tokens)
        return {
            "logits": self.classifier(self.bottleneck(z)),
            "features": [f["penultimate"], f["cls"], z],
            "image": f["proj"],
            "text": text,
        }

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        labels = batch["label"]
        ce = losses.cross_entropy_smooth(out["logits"].float(), labels, recipe.label_smoothing)
        triplet = sum(losses.triplet_hard(f.float(), labels, recipe.triplet_margin) for f in out["features"])
        image, text = out["image"].float(), out["text"].float()
        supcon = losses.supcon(image, text, labels, labels) + losses.supcon(text, image, labels, labels)
        return ce + triplet + recipe.supcon_weight * supcon

    def embed(self, x: torch.Tensor, *, simplified: bool = False, **fields) -> torch.Tensor:
        f, tokens = self._visual(x)
        text = self.simplified_text(x.shape[0]) if simplified else self.composed_text(f["proj"])
        return unit(self.interact(text, tokens))

    def test_outputs(self, x: torch.Tensor, **fields) -> tuple[torch.Tensor, torch.Tensor]:
        """The composed mode's feature, and the simplified mode's as the per-sample output
        that ``extra_metrics`` scores."""
        f, tokens = self._visual(x)
        composed = unit(self.interact(self.composed_text(f["proj"]), tokens))
        simplified = unit(self.interact(self.simplified_text(x.shape[0]), tokens))
        return composed, simplified

    def extra_metrics(self, data, rows: np.ndarray, predictions: np.ndarray, features: np.ndarray) -> dict:
        full = np.zeros((len(data.index), predictions.shape[1]), dtype=np.float32)
        full[rows] = predictions
        out = {}
        for name in data.protocols:
            result = evaluate_protocol(full, data, name)
            out[name] = {"mAP": round(result["mAP"], 4), "rank1": round(float(result["cmc"][0]), 4)}
        return {"simplified": out}

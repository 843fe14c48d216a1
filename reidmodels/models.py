"""Baselines: CLIP-ReID (images, two stages) and FT-CLIP (tracklets, frame mean).

CLIP-ReID (Li et al., AAAI 2023): stage 1 freezes both encoders and learns, per
identity, ``n`` text tokens inside "A photo of a X X X X person." with image->text and
text->image supervised contrastive losses; stage 2 freezes the text side and trains
the image encoder with identity CE (after a BNNeck), batch-hard triplet, and
image->text CE against every identity's text feature.
FT-CLIP (the G2A-VReID / VSLA-CLIP baseline): the image encoder on each sampled
frame, features mean-pooled over time, BNNeck, CE + triplet.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .backbone import CLIPBackbone

__all__ = ["CLIPReID", "FTCLIP", "build_model", "dataset_facts", "make_model", "model_options"]

TEMPLATE = "A photo of a {} person."


class _Head(nn.Module):
    """BNNeck (Luo et al.): BN without a learned shift, then a bias-free classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bottleneck = nn.BatchNorm1d(dim)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feature: torch.Tensor) -> dict:
        bn = self.bottleneck(feature)
        return {"feature": feature, "bn": bn, "logits": self.classifier(bn)}


class CLIPReID(nn.Module):
    def __init__(self, backbone: CLIPBackbone, num_classes: int, *, prompt_tokens: int = 4) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = _Head(backbone.embed_dim, num_classes)
        ids = backbone.tokenize([TEMPLATE.format(" ".join(["X"] * prompt_tokens))])
        x_token = int(backbone.tokenize(["X"])[0, 1])
        start = int((ids[0] == x_token).nonzero()[0])
        with torch.no_grad():
            embedded = backbone.token_embeddings(ids)
        self.register_buffer("prefix", embedded[:, :start].clone())
        self.register_buffer("suffix", embedded[:, start + prompt_tokens :].clone())
        self.register_buffer("eot", ids.argmax(-1))
        width = embedded.shape[-1]
        self.ctx = nn.Parameter(torch.randn(num_classes, prompt_tokens, width) * 0.02)

    def text_features(self, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Text features of the identities ``labels`` (all identities when None)."""
        ctx = self.ctx if labels is None else self.ctx[labels]
        n = ctx.shape[0]
        tokens = torch.cat([self.prefix.expand(n, -1, -1), ctx, self.suffix.expand(n, -1, -1)], dim=1)
        return self.backbone.encode_text_embeddings(tokens, self.eot.expand(n))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Stage 2 and inference: the head's outputs. With ``labels`` (stage 1): the
        frozen image features and the labels' text features, through one forward so
        that DDP averages the text tokens' gradients."""
        if labels is not None:
            with torch.no_grad():
                image = self.backbone.encode_image(images)[0]
            return {"image": image, "text": self.text_features(labels)}
        pooled, _ = self.backbone.encode_image(images)
        return self.head(pooled)


class FTCLIP(nn.Module):
    def __init__(self, backbone: CLIPBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = _Head(backbone.embed_dim, num_classes)

    def forward(self, frames: torch.Tensor) -> dict:
        """``frames`` (N, T, 3, H, W) -> one feature per tracklet (frame mean)."""
        n, t = frames.shape[:2]
        pooled, _ = self.backbone.encode_image(frames.flatten(0, 1))
        return self.head(pooled.view(n, t, -1).mean(1))


MODELS = ("clip-reid", "ft-clip", "latex", "cerberus")


def make_model(kind: str, backbone: CLIPBackbone | None, num_classes: int, **options) -> nn.Module:
    """The ``kind`` model on ``backbone`` with ``num_classes`` train identities."""
    if kind == "clip-reid":
        return CLIPReID(backbone, num_classes, **options)
    if kind == "ft-clip":
        return FTCLIP(backbone, num_classes)
    if kind == "latex":
        from .latex import LATex

        return LATex(backbone, num_classes, **options)
    if kind == "cerberus":  # its own ResNet-50: no CLIP backbone
        from .cerberus import Cerberus

        return Cerberus(num_classes, **options)
    raise ValueError(f"unknown model {kind!r}: expected one of {', '.join(MODELS)}")


def dataset_facts(data) -> dict:
    """What a model needs from a converted dataset: train identities, attribute values,
    SID groups and, per SID, how many training persons have it (Cerberus's margins)."""
    schema = data.manifest.get("attributes")
    facts = {
        "num_classes": int(data.manifest["splits"]["train"]["ids"]),
        "attribute_classes": [len(a["values"]) for a in schema["attributes"]] if schema else None,
        "attribute_names": [a["name"] for a in schema["attributes"]] if schema else [],
        "attribute_values": [a["values"] for a in schema["attributes"]] if schema else [],
        "groups": schema["groups"] if schema else [],
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


def model_options(kind: str, facts: dict, **options) -> dict:
    """The constructor options a model takes from the dataset, plus ``options``."""
    if kind == "latex":
        return {"attribute_classes": facts["attribute_classes"], **options}
    if kind == "cerberus":
        if not facts["groups"]:
            raise ValueError("Cerberus needs a dataset with attributes and SID groups (Market-1501, DukeMTMC-reID)")
        return {
            "groups": facts["groups"],
            "attribute_values": dict(zip(facts["attribute_names"], facts["attribute_values"])),
            "sid_counts": facts["sid_counts"],
            "persons": facts["persons"],
            **options,
        }
    return options


def build_model(
    kind: str,
    *,
    dataset,
    backbone: str = "ViT-B-16",
    pretrained: str | None = None,
    image_size: tuple[int, int] = (256, 128),
    **options,
) -> nn.Module:
    """A model sized for a converted ``dataset`` (path or ``reiddata.ReidDataset``).

    ``build_model("latex", dataset="shards/agreid-v2", backbone="ViT-B-16", prompts=128,
    shared_tokens=16)``: the identities and, for LATex, the attribute heads come from
    the dataset's manifest (CARGO: no attribute heads). ``build_model("cerberus",
    dataset="shards/market1501")``: its ResNet-50, SID prototypes and margins from the
    attribute groups; ``pretrained`` is then a local torchvision ImageNet checkpoint.
    """
    from reiddata import ReidDataset, open_dataset

    from .backbone import build_clip

    data = dataset if isinstance(dataset, ReidDataset) else open_dataset(dataset)
    facts = dataset_facts(data)
    if kind == "cerberus":  # ResNet-50; ``pretrained``: a local torchvision ImageNet checkpoint
        options = model_options(kind, facts, pretrained=pretrained, **options)
        return make_model(kind, None, facts["num_classes"], **options)
    backbone_model = build_clip(backbone, pretrained=pretrained, image_size=image_size)
    return make_model(kind, backbone_model, facts["num_classes"], **model_options(kind, facts, **options))

"""Cerberus (Eom et al., "Cerberus: Attribute-based Person Re-identification Using Semantic
IDs"): one model for person reID, attribute recognition (PAR) and attribute search (APS).

- Backbone: ResNet-50 shared up to conv4_1 (``layer3[0]``); the rest of conv4 and
  conv5 (stride 1) are duplicated into a global and a local branch (24x8x2048 maps for
  384x128 input). GAP of the global map feeds the ``identity`` and ``carrying``
  groups; the local map, aligned, is pooled in three horizontal parts for ``head``,
  ``upper`` and ``lower``. Each group: FC + BN to a 512-d partial representation.
- Alignment (parameter-free): heat map = channel L2 norm, max over each row, the rows
  above sigma = 5 bound the person; that band is resized (bilinear) back to the full
  height before the part pooling.
- One learnable prototype (512-d, He-normal) per SID of every group, unseen SIDs
  included (reiddata's SIDs index the full product of a group's values).
- Losses: semantic guidance ``max(1 - m - cos(f, p_sid), 0)`` with the adaptive
  margin ``m = log(alpha N_sid / N + beta)`` (alpha 0.4, beta 1.8; N_sid = training
  persons with that SID, N = training persons); per group, identity CE and soft-margin
  batch-hard triplet; the prototype-relation regulariser: for two prototypes of a
  group whose SIDs differ in one attribute only, their difference should be the
  difference of that attribute's learnable value vectors ``v_l`` (so every such pair
  has the same residual). Weights: lambda_sem 5, lambda_id 1, lambda_reg 0.001.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..backbone import TINY
from ..evaluation.metrics import label_based_mean_accuracy, retrieval_metrics
from .base import IMAGENET_MEAN, Method, Recipe, StagePlan

__all__ = ["Cerberus", "adaptive_margins", "align_rows", "aps_scores"]

GLOBAL_GROUPS = ("identity", "carrying")  # GAP of the global branch
PART_GROUPS = ("head", "upper", "lower")  # top / middle / bottom of the aligned local branch
SIGMA = 5.0
ALPHA, BETA = 0.4, 1.8
LAMBDA_SEM, LAMBDA_ID, LAMBDA_REG = 5.0, 1.0, 0.001


def adaptive_margins(counts: Sequence[int], persons: int, alpha: float = ALPHA, beta: float = BETA) -> torch.Tensor:
    """``m = log(alpha * N_sid / N + beta)`` per SID: rare SIDs get a smaller margin."""
    n = torch.as_tensor(counts, dtype=torch.float32)
    return torch.log(alpha * n / max(persons, 1) + beta)


def align_rows(feature: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """The rows whose strongest activation (channel L2 norm, max across the row) exceeds
    ``sigma``, resized back to the full height; maps with no such row stay as they are.

    The band of each map is resized as ``F.interpolate(band, (h, w), mode="bilinear",
    align_corners=False)`` does (``align_rows_loop``, the plain reading), for the whole batch
    at once by gathering rows: no Python loop over samples and no data-dependent shapes,
    so the graph exports to ONNX with a dynamic batch."""
    n, c, h, w = feature.shape
    heat = feature.norm(dim=1).amax(dim=2)  # (N, H)
    above = heat > sigma
    index = torch.arange(h, device=feature.device).expand(n, h)
    first = torch.where(above, index, torch.full_like(index, h)).amin(dim=1)
    last = torch.where(above, index, torch.full_like(index, -1)).amax(dim=1)
    keep = (first >= h) | ((first == 0) & (last == h - 1))  # no row above sigma, or every row
    band = (last - first + 1).clamp(min=1)
    # bilinear, align_corners=False: source = (dst + 0.5) * band / h - 0.5, below 0 held at 0
    scale = band.to(feature.dtype) / h
    source = ((torch.arange(h, device=feature.device, dtype=feature.dtype) + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    low = source.floor().long()
    high = torch.minimum(low + 1, (band - 1)[:, None])
    frac = (source - low.to(feature.dtype))[:, None, :, None]
    rows = lambda r: (first[:, None] + r).clamp(0, h - 1)[:, None, :, None].expand(n, c, h, w)  # noqa: E731
    resized = torch.gather(feature, 2, rows(low)) * (1 - frac) + torch.gather(feature, 2, rows(high)) * frac
    return torch.where(keep[:, None, None, None], feature, resized)


def align_rows_loop(feature: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """``align_rows`` one map at a time with ``F.interpolate``: the reference it is tested against."""
    n, c, h, w = feature.shape
    heat = feature.norm(dim=1).amax(dim=2)  # (N, H)
    out = []
    for i in range(n):
        rows = torch.nonzero(heat[i] > sigma).flatten()
        if len(rows) == 0 or (rows[0] == 0 and rows[-1] == h - 1):
            out.append(feature[i])
            continue
        band = feature[i : i + 1, :, int(rows[0]) : int(rows[-1]) + 1]
        out.append(F.interpolate(band, size=(h, w), mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


def _resnet(backbone: str, pretrained: str | None) -> nn.Module:
    """ResNet-50 (the paper's), or for ``reid-tiny`` a one-block-per-stage BasicBlock ResNet
    (512 channels, random weights) so the CPU demo pipeline trains in about a minute."""
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet

    if backbone == TINY:
        if pretrained:
            raise ValueError(f"cerberus: backbone {TINY} has no pretrained weights (got {pretrained!r})")
        return ResNet(BasicBlock, [1, 1, 1, 1])
    model = torchvision.models.resnet50(weights=None)
    if pretrained:
        try:
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{pretrained}: no such ImageNet checkpoint; download torchvision's resnet50 weights "
                "(resnet50-0676ba61.pth) where the network allows and pass the local path"
            ) from None
        model.load_state_dict(state)
    return model


class Cerberus(Method):
    name = "cerberus"
    kind = "image"
    fields = ("sid",)
    sid_groups = GLOBAL_GROUPS + PART_GROUPS
    pixel_stats = IMAGENET_MEAN  # its ResNet-50's input statistics
    # Adam, warm-up from 1% then cosine, 16 ids x 4, 384x128, flip + erasing; 120 epochs of
    # the official identity sampler (12,936 / 64 = 202 batches) ~ the paper's 24k iterations
    # on Market-1501. Its input pipeline is reid-strong-baseline's (the paper names no other).
    recipe = Recipe(
        stages={
            "train": StagePlan(
                epochs=120,
                lr=3.5e-4,
                weight_decay=5e-4,
                schedule="warmup-cosine",
                warmup_epochs=10,
                warmup_from=0.01,
                min_lr=1.6e-6,
                batches="images",
            )
        },
        p=16,
        k=4,
        image_size=(384, 128),
        random_erasing=0.5,
        transforms="strong-baseline",
    )

    def __init__(
        self,
        num_classes: int,
        *,
        groups: Sequence[dict],
        attribute_values: dict[str, list[str]],
        sid_counts: dict[str, list[int]],
        persons: int,
        backbone: str = "resnet50",
        pretrained: str | None = None,
        dim: int = 512,
    ) -> None:
        super().__init__()
        names = [g["name"] for g in groups]
        if sorted(names) != sorted(GLOBAL_GROUPS + PART_GROUPS):
            raise ValueError(f"Cerberus needs the groups {GLOBAL_GROUPS + PART_GROUPS}, the dataset has {names}")
        self.group_names = [n for n in GLOBAL_GROUPS + PART_GROUPS]
        self.group_attributes = {g["name"]: list(g["attributes"]) for g in groups}
        self.attribute_values = attribute_values
        r = _resnet(backbone, pretrained)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3[0])
        first = r.layer4[0]  # its strided conv: conv2 in a Bottleneck, conv1 in a BasicBlock
        strided = first.conv2 if first.conv2.stride == (2, 2) else first.conv1
        strided.stride, first.downsample[0].stride = (1, 1), (1, 1)  # keep 24x8 maps
        rest = nn.Sequential(*r.layer3[1:], r.layer4)
        self.global_branch, self.local_branch = rest, copy.deepcopy(rest)
        self.partials = nn.ModuleDict(
            {g: nn.Sequential(nn.Linear(r.fc.in_features, dim), nn.BatchNorm1d(dim)) for g in self.group_names}
        )
        self.classifiers = nn.ModuleDict({g: nn.Linear(dim, num_classes, bias=False) for g in self.group_names})
        self.prototypes = nn.ParameterDict()
        for g in self.group_names:
            proto = torch.empty(len(sid_counts[g]), dim)
            nn.init.kaiming_normal_(proto)
            self.prototypes[g] = nn.Parameter(proto)
            self.register_buffer(f"margin_{g}", adaptive_margins(sid_counts[g], persons))
        self.values = nn.ParameterDict(  # v_l: one learnable vector per value of every attribute
            {a: nn.Parameter(torch.zeros(len(v), dim)) for a, v in attribute_values.items()}
        )
        self._pairs = {g: self._one_step_pairs(g) for g in self.group_names}

    # --- SIDs ---------------------------------------------------------------------

    def _radices(self, group: str) -> list[int]:
        return [len(self.attribute_values[a]) for a in self.group_attributes[group]]

    def sid_digits(self, group: str, sid: int) -> list[int]:
        """Value index per attribute of a group's SID (first attribute most significant)."""
        digits = []
        for radix in reversed(self._radices(group)):
            sid, d = divmod(sid, radix)
            digits.append(d)
        return digits[::-1]

    def _one_step_pairs(self, group: str) -> list[tuple[int, int, int, int, int]]:
        """(sid_a, sid_b, attribute position, value of a, value of b) for SIDs differing in one attribute."""
        radices = self._radices(group)
        total = int(np.prod(radices))
        pairs = []
        for a in range(total):
            da = self.sid_digits(group, a)
            for pos, radix in enumerate(radices):
                for v in range(da[pos] + 1, radix):
                    db = list(da)
                    db[pos] = v
                    b = int(np.ravel_multi_index(db, radices))
                    pairs.append((a, b, pos, da[pos], v))
        return pairs

    # --- forward --------------------------------------------------------------------

    @classmethod
    def build(cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, **options) -> Cerberus:
        """Its own ResNet-50 (``backbone`` other than ``reid-tiny`` is not used); ``pretrained``: a
        local torchvision checkpoint."""
        if not facts["groups"]:
            raise ValueError("Cerberus needs a dataset with attributes and SID groups (Market-1501, DukeMTMC-reID)")
        return cls(
            facts["num_classes"],
            groups=facts["groups"],
            attribute_values=dict(zip(facts["attribute_names"], facts["attribute_values"])),
            sid_counts=facts["sid_counts"],
            persons=facts["persons"],
            backbone=backbone,
            pretrained=pretrained,
            **options,
        )

    def trains(self, name: str, stage: str) -> bool:
        return True

    @property
    def embed_dim(self) -> int:
        return len(self.group_names) * self.classifiers[self.group_names[0]].in_features

    def forward(self, batch: dict, stage: str) -> dict:
        return self.outputs(batch["x"])

    def embed(self, x: torch.Tensor, **fields) -> torch.Tensor:
        return self.outputs(x)["bn"]  # unit: the mean cosine over the five partials

    def test_outputs(self, x: torch.Tensor, **fields) -> tuple:
        out = self.outputs(x)
        sids = self.predict_sids(out["partial"])
        return out["bn"], torch.stack([sids[g] for g in self.group_names], dim=1)

    def outputs(self, images: torch.Tensor) -> dict:
        shared = self.stem(images)
        g_map, l_map = self.global_branch(shared), align_rows(self.local_branch(shared))
        pooled = {name: g_map.mean(dim=(2, 3)) for name in GLOBAL_GROUPS}
        parts = torch.chunk(l_map, 3, dim=2)
        pooled.update({name: part.mean(dim=(2, 3)) for name, part in zip(PART_GROUPS, parts)})
        partial = {g: self.partials[g](pooled[g]) for g in self.group_names}
        normalised = torch.stack([F.normalize(partial[g], dim=1) for g in self.group_names], dim=1)
        # retrieval feature: the cosine of two of these = mean cosine over the five partials
        return {
            "partial": partial,
            "logits": {g: self.classifiers[g](partial[g]) for g in self.group_names},
            "bn": normalised.flatten(1) / math.sqrt(len(self.group_names)),
        }

    # --- losses -----------------------------------------------------------------------

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        """lambda_sem * semantic guidance + lambda_id * (CE + triplet per group) + lambda_reg * relations.

        ``batch["sid"]`` (N, groups) in ``group_names`` order; -1 where a sample has no attributes.
        """
        labels, sids = batch["label"], batch["sid"]
        semantic, identification = 0.0, 0.0
        for j, g in enumerate(self.group_names):
            f = out["partial"][g].float()
            identification = identification + losses.cross_entropy_smooth(out["logits"][g].float(), labels, 0.0)
            identification = identification + losses.triplet_hard(f, labels, margin=None)
            known = sids[:, j] >= 0
            if known.any():
                sid = sids[known, j]
                cos = F.cosine_similarity(f[known], self.prototypes[g][sid].float(), dim=1)
                margin = getattr(self, f"margin_{g}")[sid]
                semantic = semantic + F.relu(1 - margin - cos).mean()
        return LAMBDA_SEM * semantic + LAMBDA_ID * identification + LAMBDA_REG * self.relation_loss()

    def relation_loss(self) -> torch.Tensor:
        """Mean squared distance between each one-attribute prototype difference and the
        difference of that attribute's value vectors."""
        terms = []
        for g in self.group_names:
            if not self._pairs[g]:
                continue
            p = self.prototypes[g]
            a, b, pos, va, vb = (torch.as_tensor(x, device=p.device) for x in zip(*self._pairs[g]))
            # index_select and where, not masked assignment: the masked form's backward sums
            # in a varying order on CPU, so two runs gave different prototypes
            target = torch.zeros(len(a), p.shape[1], dtype=p.dtype, device=p.device)
            for k, attribute in enumerate(self.group_attributes[g]):
                values = self.values[attribute]
                hi, lo = vb.clamp(max=len(values) - 1), va.clamp(max=len(values) - 1)  # other rows: masked out
                step = torch.index_select(values, 0, hi) - torch.index_select(values, 0, lo)
                target = target + torch.where((pos == k).unsqueeze(1), step, 0.0)
            difference = torch.index_select(p, 0, b) - torch.index_select(p, 0, a) - target
            terms.append((difference**2).sum(1).mean())
        return torch.stack(terms).mean() if terms else torch.zeros(())

    # --- attribute recognition and search ----------------------------------------------

    @torch.no_grad()
    def predict_sids(self, partial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """PAR: the nearest prototype (cosine) per group."""
        return {
            g: (F.normalize(partial[g].float(), dim=1) @ F.normalize(self.prototypes[g].float(), dim=1).T).argmax(1)
            for g in self.group_names
        }

    def sid_attributes(self, group: str, sid: int) -> dict[str, str]:
        digits = self.sid_digits(group, sid)
        return {a: self.attribute_values[a][d] for a, d in zip(self.group_attributes[group], digits)}

    def query_prototypes(self, query: dict[str, str]) -> dict[str, torch.Tensor]:
        """APS: for every group the query says something about, the prototypes of the SIDs
        consistent with it (all of them for an attribute left out)."""
        out = {}
        for g in self.group_names:
            given = [a for a in self.group_attributes[g] if a in query]
            if not given:
                continue  # an unknown group does not take part in the score
            radices = self._radices(g)
            allowed = [
                [self.attribute_values[a].index(query[a])] if a in query else list(range(r))
                for a, r in zip(self.group_attributes[g], radices)
            ]
            sids = [int(np.ravel_multi_index(d, radices)) for d in itertools.product(*allowed)]
            out[g] = self.prototypes[g][sids]
        return out

    # --- evaluation beyond retrieval ------------------------------------------------------

    def extra_metrics(self, data, rows: np.ndarray, predictions: np.ndarray, features: np.ndarray) -> dict:
        return {"par": self._par_metrics(data, rows, predictions), "aps": self._aps_metrics(data, features)}

    def _par_metrics(self, data, rows: np.ndarray, predictions: np.ndarray) -> dict:
        """Pedestrian attribute recognition from the nearest SID prototypes: mA per attribute."""
        labels = data.index.column("attributes").to_pylist()
        truth, guess = [], []
        for i, r in enumerate(rows):
            if labels[r]:
                predicted = {}
                for j, g in enumerate(self.group_names):
                    predicted.update(self.sid_attributes(g, int(predictions[i, j])))
                truth.append(labels[r])
                guess.append(predicted)
        per = {a: round(label_based_mean_accuracy([t[a] for t in truth], [p[a] for p in guess]), 4) for a in truth[0]}
        return {"mA": round(float(np.mean(list(per.values()))), 4), "per_attribute": per, "samples": len(truth)}

    def _aps_metrics(self, data, features: np.ndarray) -> dict:
        """APS over the first protocol's labelled gallery: every attribute combination in it as
        a query (full), and the same queries with one group unknown (partial)."""
        labels = data.index.column("attributes").to_pylist()
        gallery = [r for r in next(iter(data.protocols.values())).gallery if labels[r]]
        groups = len(self.group_names)
        unit = (features[gallery] * np.sqrt(groups)).astype(np.float32)  # undo the 1/sqrt(groups) of "bn"
        partials = torch.from_numpy(unit).view(len(gallery), groups, -1)
        combos = sorted({tuple(sorted(labels[r].items())) for r in gallery})
        out = {}
        for name, hidden in [("full", None)] + [(f"without_{g}", g) for g in self.group_names]:
            unknown = set(self.group_attributes[hidden]) if hidden else set()
            scores, relevant = [], []
            for combo in combos:
                query = {a: v for a, v in combo if a not in unknown}
                scores.append(aps_scores(self, partials, query).numpy())
                relevant.append([all(labels[r][a] == v for a, v in query.items()) for r in gallery])
            result = retrieval_metrics(np.asarray(scores), np.asarray(relevant))
            out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        partial = [v for k, v in out.items() if k != "full"]
        out["partial_mean"] = {k: round(float(np.mean([p[k] for p in partial])), 4) for k in ("mAP", "rank1")}
        return out


@torch.no_grad()
def aps_scores(model: Cerberus, partials: torch.Tensor, query: dict[str, str]) -> torch.Tensor:
    """Attribute search: per gallery sample, the mean over the query's groups of the best
    cosine to a prototype consistent with the query (``partials``: (N, groups, D), unit)."""
    scores = []
    for g, protos in model.query_prototypes(query).items():
        j = model.group_names.index(g)
        scores.append((partials[:, j] @ F.normalize(protos.float(), dim=1).T).amax(1))
    return torch.stack(scores).mean(0)

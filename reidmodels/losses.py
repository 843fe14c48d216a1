"""The ReID losses of the baselines: label-smoothed CE, batch-hard triplet, SupCon, i2t/t2i."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy_smooth", "image_text_ce", "supcon", "triplet_hard"]


def cross_entropy_smooth(logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy with label smoothing (Szegedy et al.; BoT's ``CrossEntropyLabelSmooth``)."""
    return F.cross_entropy(logits, labels, label_smoothing=epsilon)


def triplet_hard(
    features: torch.Tensor,
    labels: torch.Tensor,
    margin: float | None = 0.3,
    normalize: bool = False,
    metric: str = "euclidean",
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.): hardest positive and negative per anchor.

    ``margin`` None gives the soft-margin form ``log(1 + exp(d_ap - d_an))``.
    ``metric="cosine"``: the distance is 1 - cosine similarity (VSLA-CLIP's).
    """
    if metric == "cosine":
        unit = F.normalize(features.float(), dim=1)
        dist = 1 - unit @ unit.T
    elif metric == "euclidean":
        if normalize:
            features = F.normalize(features, dim=1)
        dist = torch.cdist(features.float(), features.float()).clamp_min(1e-12)
    else:
        raise ValueError(f"unknown triplet metric {metric!r}: euclidean or cosine")
    same = labels[:, None] == labels[None, :]
    d_ap = (dist * same).max(dim=1).values
    d_an = dist.masked_fill(same, float("inf")).min(dim=1).values
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


def supcon(
    anchors: torch.Tensor,
    contrasts: torch.Tensor,
    labels_a: torch.Tensor,
    labels_c: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.) of ``anchors`` against ``contrasts``:
    every contrast with the anchor's label is a positive. CLIP-ReID stage 1 uses it both
    ways (image -> text and text -> image)."""
    logits = anchors @ contrasts.T / temperature
    positives = (labels_a[:, None] == labels_c[None, :]).float()
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -((positives * log_prob).sum(1) / positives.sum(1).clamp_min(1)).mean()


def image_text_ce(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    logit_scale: float | torch.Tensor = 1.0,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """Image-to-text cross-entropy: each image against every identity's text feature
    (CLIP-ReID stage 2's ``L_i2tce``), features L2-normalised."""
    logits = logit_scale * F.normalize(image_features, dim=1) @ F.normalize(text_features, dim=1).T
    return F.cross_entropy(logits, labels, label_smoothing=epsilon)

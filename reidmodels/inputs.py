"""What a method's forward pass reads: batches collated from reiddata samples, pixels
resized, normalised and (training) augmented on the device. Shared by training,
evaluation and feature extraction, so the test features are computed one way only."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .methods import Method, Recipe
from .methods.base import VIEWS

__all__ = ["Collate", "model_inputs", "on_device", "to_uint8_tensor"]


def to_uint8_tensor(size: tuple[int, int]):
    import cv2

    def transform(image: np.ndarray) -> torch.Tensor:  # bicubic, as the official transforms resize
        resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        return torch.from_numpy(resized).permute(2, 0, 1).contiguous()

    return transform


class Collate:
    """A batch as the methods read it: pixels, label, pid, camid, view index, keys and the
    fields the method declares: attribute value indices and SIDs (-1 where a sample has none).

    (The default collate cannot batch ``attributes``, absent on distractors.)
    """

    def __init__(self, method: type[Method], facts: dict) -> None:
        self.names = facts["attribute_names"] if "attributes" in method.fields else []
        self.lookup = [{v: i for i, v in enumerate(vs)} for vs in facts["attribute_values"]] if self.names else []
        self.sid_groups = list(method.sid_groups) if "sid" in method.fields else []

    def __call__(self, items: list[dict]) -> dict:
        out = {k: torch.as_tensor([item[k] for item in items]) for k in ("label", "pid", "camid")}
        out["key"] = [item["key"] for item in items]
        out["view"] = torch.as_tensor([VIEWS.index(item["view"]) for item in items])
        if self.names:
            out["attributes"] = torch.as_tensor(
                [
                    [
                        lk[item["attributes"][n]] if item.get("attributes") else -1
                        for n, lk in zip(self.names, self.lookup)
                    ]
                    for item in items
                ]
            )
        if self.sid_groups:
            out["sid"] = torch.as_tensor(
                [[item["sid"][g] if item.get("sid") else -1 for g in self.sid_groups] for item in items]
            )
        if "image" in items[0]:
            out["image"] = torch.stack([item["image"] for item in items])
        else:
            out["frames"] = [torch.stack(frames) for frames in zip(*(item["frames"] for item in items))]
        return out


def model_inputs(
    batch: dict,
    device: torch.device,
    *,
    stats: tuple,
    generator: torch.Generator | None = None,
    recipe: Recipe | None = None,
) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) or clips (N, T, 3, H, W) on ``device``.

    With a ``recipe`` (training), augmentation on the device, per sample (per tracklet:
    the whole clip): horizontal flip, zero padding + random crop back, random erasing.
    """
    x = batch["image"] if "image" in batch else torch.stack(batch["frames"], dim=1)
    x = x.to(device, non_blocking=True).float().div_(255)
    mean = torch.tensor(stats[0], device=device).view(3, 1, 1)
    std = torch.tensor(stats[1], device=device).view(3, 1, 1)
    x = (x - mean) / std
    if recipe is None:
        return x
    n, shape = x.shape[0], [1] * (x.dim() - 1)
    if recipe.flip:
        mask = torch.rand(n, generator=generator).to(device) < recipe.flip
        x = torch.where(mask.view(-1, *shape), x.flip(-1), x)
    if recipe.pad:
        pad = recipe.pad
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x.flatten(0, -4), (pad, pad, pad, pad)).view(*x.shape[:-2], h + 2 * pad, w + 2 * pad)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, ..., dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    if recipe.random_erasing:
        x = random_erasing(x, recipe.random_erasing, generator)
    return x


def on_device(batch: dict, device: torch.device) -> dict:
    """The batch's labels and declared fields on ``device`` (what ``forward`` and ``loss`` read)."""
    return {k: v.to(device) for k, v in batch.items() if k in ("label", "view", "attributes", "sid", "feature")}


def random_erasing(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Erase one random rectangle (2-40% of the area, aspect 0.3-3.3) per chosen sample, to 0 (the mean)."""
    h, w = x.shape[-2:]
    x = x.clone()
    for i in range(x.shape[0]):
        if float(torch.rand(1, generator=generator)) >= p:
            continue
        for _ in range(10):
            area = h * w * float(torch.empty(1).uniform_(0.02, 0.4, generator=generator))
            aspect = float(torch.empty(1).uniform_(0.3, 3.3, generator=generator))
            eh, ew = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
            if eh < h and ew < w:
                top = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                x[i, ..., top : top + eh, left : left + ew] = 0
                break
    return x

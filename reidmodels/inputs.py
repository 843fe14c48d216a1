"""What a method's forward pass reads: batches collated from reiddata samples, pixels
resized, normalised and (training) augmented on the device (``reidmodels.transforms``). Shared by training,
evaluation and feature extraction, so the test features are computed one way only."""

from __future__ import annotations

import torch

from .methods import Method, Recipe
from .methods.base import VIEWS
from .transforms import augment, normalise, resize_to_uint8

__all__ = ["Collate", "model_inputs", "on_device", "to_uint8_tensor"]


def to_uint8_tensor(size: tuple[int, int], mode: str = "bicubic"):
    """The loader's resize: PIL's antialiased ``mode`` kernel, as the official pipelines resize."""
    return resize_to_uint8(size, mode)


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

    With a ``recipe`` (training), its pipeline's augmentation on the device, per sample
    (per tracklet: the whole clip): ``reidmodels.transforms.augment``.
    """
    x = batch["image"] if "image" in batch else torch.stack(batch["frames"], dim=1)
    x = x.to(device, non_blocking=True).float().div_(255)
    if recipe is None:
        return normalise(x, stats)
    return augment(x, recipe=recipe, stats=stats, generator=generator)


def on_device(batch: dict, device: torch.device) -> dict:
    """The batch's labels and declared fields on ``device`` (what ``forward`` and ``loss`` read)."""
    return {
        k: v.to(device) for k, v in batch.items() if k in ("label", "camid", "view", "attributes", "sid", "feature")
    }

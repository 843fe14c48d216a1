"""What a method's forward pass reads: batches collated from reiddata samples, pixels
resized, normalised and (training) augmented on the device (``reidmodels.transforms``). Shared by training,
evaluation and feature extraction, so the test features are computed one way only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .methods import Method, Recipe
from .methods.base import VIEWS
from .transforms import PIPELINES, augment, normalise, resize_to_uint8

__all__ = ["Collate", "Transforms", "model_inputs", "on_device", "shard_reader", "transforms_for"]


@dataclass(frozen=True)
class Transforms:
    """What a model's pixels go through. In the loader workers, ``train`` or ``test``: an RGB
    uint8 H x W x 3 array resized to the recipe's size with its pipeline's PIL kernel, as a
    uint8 (3, H, W) tensor; on the device, ``model_inputs``: to float, augmented (training)
    and normalised by ``stats``."""

    image_size: tuple[int, int]
    train: Callable[[np.ndarray], torch.Tensor]
    test: Callable[[np.ndarray], torch.Tensor]
    stats: tuple


def transforms_for(recipe: Recipe | dict, stats: tuple) -> Transforms:
    """The transforms of a recipe (a ``Recipe`` or its dict in a checkpoint; checkpoints from
    before pipelines were named resize as ``fast-reid``)."""
    if isinstance(recipe, dict):
        size, name = tuple(recipe["image_size"]), recipe.get("transforms", "fast-reid")
    else:
        size, name = tuple(recipe.image_size), recipe.transforms
    pipeline = PIPELINES[name]
    return Transforms(
        size, resize_to_uint8(size, pipeline.train_resize), resize_to_uint8(size, pipeline.test_resize), stats
    )


def shard_reader(
    data,
    *,
    transform: Callable,
    split: str | None = None,
    rows: np.ndarray | None = None,
    train: bool | None = None,
    clip_mode: str | None,
    clip_length: int | None,
    seed: int = 0,
):
    """The one map-style reader of training, a features stage and test: a ``split`` of a
    dataset (or a combination of several) or its index ``rows``, decoded by OpenCV and
    resized in the loader workers by ``transform`` (``Transforms.train`` or ``.test``)."""
    from reiddata import ShardDataset
    from reiddata.combine import split_reader

    options = {"decode": "numpy", "transform": transform, "train": train, "clip_mode": clip_mode}
    options |= {"clip_length": clip_length, "seed": seed}
    if rows is not None:
        return ShardDataset(data, rows=rows, **options)
    return split_reader(data, split, **options)


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

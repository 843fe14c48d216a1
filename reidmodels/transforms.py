"""The official input pipelines, one entry each: what a method's images go through.

Two halves, as our loaders split the work:

- **in the loader workers**, on uint8 pixels: the resize, with PIL's own antialiased
  kernels (``Image.resize``), as every official pipeline does through torchvision's
  ``Resize`` or its own ``Scale`` (so the pixels equal the official ones exactly);
- **on the model's device**, per batch: flip, black padding and random crop (before
  normalising, as ``Pad(10)`` fills black pixels), normalising, random erasing.

A recipe names its pipeline (``Recipe.transforms``); ``PIPELINES`` holds each one as
data with the official file it comes from, and ``ERASERS`` the four erasing rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["ERASERS", "PIPELINES", "Pipeline", "augment", "normalise", "resize_to_uint8"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
VIDEO_FILL = (0.4914, 0.4822, 0.4465)  # VSLA-CLIP's erasing constant, written after normalising


@dataclass(frozen=True)
class Pipeline:
    """One official input pipeline (see the module docstring)."""

    train_resize: str  # PIL kernel: bicubic | bilinear
    test_resize: str  # also the resize of features computed once for a stage
    erasing: str  # a key of ERASERS
    source: str  # where the official code builds it


PIPELINES = {
    # CLIP-ReID datasets/make_dataloader_clipreid.py: train T.Resize(interpolation=3), flip, Pad(10),
    # RandomCrop, ToTensor, Normalize, timm RandomErasing(mode='pixel'); test and stage 1 T.Resize (bilinear)
    "clip-reid": Pipeline("bicubic", "bilinear", "timm-pixel", "CLIP-ReID datasets/make_dataloader_clipreid.py"),
    # PromptSG (paper only) trains with CLIP-ReID's pipeline
    "promptsg": Pipeline("bicubic", "bilinear", "timm-pixel", "PromptSG paper: CLIP-ReID's transforms"),
    # LATex: fast-reid's build_transforms: Resize bicubic, flip, Pad(10) constant, RandomCrop,
    # torchvision RandomErasing(value=ImageNet mean in 0-255 pixels)
    "fast-reid": Pipeline("bicubic", "bicubic", "fast-reid-mean", "LATex fastreid/data/transforms/build.py"),
    # VSLA-CLIP datasets/make_video_dataloader.py: ST.Scale(interpolation=3) for train, stage 1 and
    # test; flip per clip; ST.RandomErasing (spatial_transforms.py:189-239)
    "vsla-clip": Pipeline(
        "bicubic", "bicubic", "video-constant", "VSLA-CLIP dataset_transformer/spatial_transforms.py"
    ),
    # Cerberus (paper only): the reid-strong-baseline rule our earlier versions used for every method
    "strong-baseline": Pipeline("bicubic", "bicubic", "zero", "reid-strong-baseline transforms (Cerberus: paper only)"),
}


def resize_to_uint8(size: tuple[int, int], mode: str = "bicubic") -> Callable[[np.ndarray], torch.Tensor]:
    """A loader transform: HxWx3 uint8 -> 3 x size uint8 tensor, resized by PIL's ``mode`` kernel."""
    from PIL import Image

    kernel = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[mode]
    height, width = size

    def transform(image: np.ndarray) -> torch.Tensor:
        resized = np.asarray(Image.fromarray(image).resize((width, height), kernel))
        return torch.from_numpy(resized.copy()).permute(2, 0, 1).contiguous()

    return transform


def normalise(x: torch.Tensor, stats: tuple) -> torch.Tensor:
    """Pixels in [0, 1] -> (x - mean) / std, channel by channel (channels third from last)."""
    mean = torch.tensor(stats[0], device=x.device).view(3, 1, 1)
    std = torch.tensor(stats[1], device=x.device).view(3, 1, 1)
    return (x - mean) / std


def _flip_pad_crop(x: torch.Tensor, flip: float, pad: int, generator) -> torch.Tensor:
    """Per sample (a clip as one): horizontal flip, then ``pad`` black pixels and a random crop back."""
    n, shape = x.shape[0], [1] * (x.dim() - 1)
    if flip:
        mask = torch.rand(n, generator=generator).to(x.device) < flip
        x = torch.where(mask.view(-1, *shape), x.flip(-1), x)
    if pad:
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x.flatten(0, -4), (pad, pad, pad, pad)).view(*x.shape[:-2], h + 2 * pad, w + 2 * pad)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, ..., dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    return x


def _uniform(low: float, high: float, generator) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def _rectangle(h: int, w: int, area: tuple, aspect: tuple, log_aspect: bool, attempts: int, generator):
    """(height, width) of a rectangle of ``area`` (fractions) and ``aspect``, or None."""
    for _ in range(attempts):
        target = h * w * _uniform(*area, generator)
        ratio = (
            math.exp(_uniform(math.log(aspect[0]), math.log(aspect[1]), generator))
            if log_aspect
            else (_uniform(*aspect, generator))
        )
        eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if eh < h and ew < w:
            return eh, ew
    return None


def _erase_each(x: torch.Tensor, p: float, generator, *, area, aspect, log_aspect, attempts, fill) -> torch.Tensor:
    """One rectangle per chosen sample (a clip: the same on every frame), filled by ``fill(shape)``."""
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        if _uniform(0, 1, generator) >= p:
            continue
        found = _rectangle(h, w, area, aspect, log_aspect, attempts, generator)
        if found is None:
            continue
        eh, ew = found
        top = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
        x[i, ..., top : top + eh, left : left + ew] = fill((3, eh, ew), x.device)
    return x


def _timm_pixel(x, p, generator, stats):
    """timm ``RandomErasing(mode='pixel')``: area 2% to 1/3, log-uniform aspect 0.3 to 3.3,
    per-pixel standard normal noise (in normalised space)."""

    def noise(shape, device):
        return torch.empty(shape).normal_(generator=generator).to(device)

    return _erase_each(x, p, generator, area=(0.02, 1 / 3), aspect=(0.3, 3.3), log_aspect=True, attempts=10, fill=noise)


def _fast_reid_mean(x, p, generator, stats):
    """torchvision ``RandomErasing`` as fast-reid builds it: area 2% to 33%, log-uniform aspect
    0.3 to 3.3, filled with the ImageNet mean pixel (normalised by the recipe's statistics)."""
    value = [(m - mean) / std for m, mean, std in zip(IMAGENET_MEAN, stats[0], stats[1])]

    def constant(shape, device):
        return torch.tensor(value, device=device).view(3, 1, 1).expand(shape)

    return _erase_each(
        x, p, generator, area=(0.02, 0.33), aspect=(0.3, 3.3), log_aspect=True, attempts=10, fill=constant
    )


def _zero(x, p, generator, stats):
    """reid-strong-baseline's rule: area 2% to 40%, uniform aspect 0.3 to 3.3, filled with 0."""

    def zeros(shape, device):
        return torch.zeros(shape, device=device)

    return _erase_each(x, p, generator, area=(0.02, 0.4), aspect=(0.3, 3.3), log_aspect=False, attempts=10, fill=zeros)


def _video_constant(x, p, generator, stats):
    """VSLA-CLIP's clip erasing: decided once per clip with its top-left corner as fractions;
    each frame draws its own area (2% to 40%) and uniform aspect (0.3 to 1/0.3), up to 100
    tries; filled with the constant (0.4914, 0.4822, 0.4465) after normalising."""
    if x.dim() != 5:
        raise ValueError("video-constant erasing takes clips (N, T, 3, H, W)")
    h, w = x.shape[-2:]
    fill = torch.tensor(VIDEO_FILL, device=x.device).view(3, 1, 1)
    for i in range(x.shape[0]):
        if _uniform(0, 1, generator) >= p:
            continue
        corner = (_uniform(0, 1, generator), _uniform(0, 1, generator))
        for t in range(x.shape[1]):
            found = _rectangle(h, w, (0.02, 0.4), (0.3, 1 / 0.3), False, 100, generator)
            if found is None:
                continue
            eh, ew = found
            top, left = int(round(corner[0] * (h - eh))), int(round(corner[1] * (w - ew)))
            x[i, t, :, top : top + eh, left : left + ew] = fill
    return x


ERASERS = {
    "timm-pixel": _timm_pixel,
    "fast-reid-mean": _fast_reid_mean,
    "zero": _zero,
    "video-constant": _video_constant,
}


def augment(x: torch.Tensor, *, recipe, stats: tuple, generator: torch.Generator | None) -> torch.Tensor:
    """Training pixels: uint8-range floats in [0, 1] (N, 3, H, W) or clips (N, T, 3, H, W) ->
    flipped, black-padded and cropped, normalised, erased, as the recipe's pipeline does."""
    pipeline = PIPELINES[recipe.transforms]
    x = _flip_pad_crop(x, recipe.flip, recipe.pad, generator)
    x = normalise(x, stats)
    if recipe.random_erasing:
        x = ERASERS[pipeline.erasing](x.clone(), recipe.random_erasing, generator, stats)
    return x

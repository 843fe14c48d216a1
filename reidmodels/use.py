"""Use a trained model: ``reidmodels.load(run)`` and ``.embed(images)``, as ``evaluate`` embeds.

``embed`` takes what a tracker or a notebook has (paths, JPEG bytes, uint8 HxWx3
arrays or tensors, PIL images; a tracklet as a list of those frames) and gives the
test features ``evaluate`` computes for the same pixels: the same decoder (OpenCV, as
the readers' ``decode="numpy"``), the same resize (the recipe's size and its
pipeline's kernel), the same normalisation and the same ``test_outputs`` feature,
L2-normalised (cosine ranking normalises too, so rankings are unchanged). Tracklets
take the frames the recipe's test sampler takes (``sample_clips``).

Methods whose feature depends on the view (LATex) or camera (CLIP-ReID's SIE) take
``view=`` (a name or one per item) and ``camid=``; the defaults are ``ground`` and the
first camera the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .factory import build_model_from_checkpoint
from .inputs import Transforms, model_inputs
from .methods.base import VIEWS
from .runtime import device_for

__all__ = ["Model", "decode_any", "load"]


def decode_any(item, where: str = "") -> np.ndarray:
    """An RGB uint8 HxWx3 array from a path, JPEG/PNG bytes, an array, a tensor or a PIL image.

    Files and bytes are decoded by OpenCV, as the shard readers decode (``decode="numpy"``);
    anything that does not decode is a ``ValueError`` naming it."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        return _decode_bytes(data, str(path))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(item), where or "image bytes")
    if torch.is_tensor(item):
        item = item.detach().cpu()
        if item.dim() == 3 and item.shape[0] == 3 and item.shape[-1] != 3:
            item = item.permute(1, 2, 0)  # CHW -> HWC
        item = item.numpy()
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        item = np.asarray(item.convert("RGB"))
    array = np.asarray(item)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{where or 'an image'}: expected uint8 H x W x 3 (RGB), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def _decode_bytes(data: bytes, where: str) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(f"{where}: not an image OpenCV can decode (JPEG, PNG, BMP, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class Model:
    """A trained model ready to embed (``load`` makes one)."""

    method: object  # the reidmodels Method, in eval mode
    info: dict  # method, recipe, config, facts, sha256
    device: torch.device
    transforms: Transforms  # the recipe's resize (test kernel) and normalisation

    @property
    def facts(self) -> dict:
        """What the model is: method, recipe, training data, feature size, input size, checkpoint."""
        recipe, config = self.info["recipe"], self.info["config"]
        return {
            "method": self.info["method"],
            "checkpoint_sha256": self.info["sha256"],
            "trained_on": config["data"],
            "dataset_kind": self.info["facts"]["kind"],
            "feature_size": int(self.method.embed_dim),
            "image_size": list(recipe["image_size"]),
            "transforms": recipe.get("transforms", "fast-reid"),
            "clip_mode": recipe["clip_mode"] if self.video else None,
            "clip_length": recipe["clip_length"] if self.video else None,
            "recipe": recipe,
        }

    @property
    def video(self) -> bool:
        return self.info["facts"]["kind"] == "video"

    def pixels(self, image, where: str = "") -> torch.Tensor:
        """One image as evaluate's loader gives it: decoded, resized to the recipe's size, uint8 (3, H, W)."""
        return self.transforms.test(decode_any(image, where))  # as evaluate's loader resizes

    def clip(self, frames, where: str = "") -> torch.Tensor:
        """A tracklet's test clip: the frames the recipe's sampler takes, each as ``pixels``, (T, 3, H, W)."""
        from reiddata import sample_clips

        if isinstance(frames, (str, bytes, np.ndarray)) or torch.is_tensor(frames) or not len(frames):
            raise ValueError(f"{where}: a tracklet is a non-empty list of frames")
        recipe = self.info["recipe"]
        clips = sample_clips(len(frames), mode=recipe["clip_mode"], length=recipe["clip_length"], train=False)
        picked = [j for clip in clips for j in clip]
        return torch.stack([self.pixels(frames[j], f"{where} frame {j}") for j in picked])

    def fields(self, n: int, view=None, camid=None) -> dict:
        """``view`` and ``camid`` index tensors for ``n`` items (one value for all, or one per item)."""
        views = [view] * n if view is None or isinstance(view, str) else list(view)
        cams = [camid] * n if camid is None or isinstance(camid, int) else list(camid)
        if len(views) != n or len(cams) != n:
            raise ValueError(f"view and camid: one value, or one per item ({n})")
        default_cam = (self.info["facts"].get("cameras") or [0])[0]
        for v in views:
            if v is not None and v not in VIEWS:
                raise ValueError(f"view {v!r} is not one of {VIEWS}")
        return {
            "view": torch.as_tensor([VIEWS.index(v or "ground") for v in views], device=self.device),
            "camid": torch.as_tensor([default_cam if c is None else int(c) for c in cams], device=self.device),
        }

    @torch.no_grad()
    def embed(self, items: Sequence, *, view=None, camid=None, batch_size: int = 64) -> np.ndarray:
        """(N, feature_size) float32, L2-normalised: one row per image (or tracklet) of ``items``."""
        if isinstance(items, (str, Path, bytes)) or hasattr(items, "convert"):
            items = [items]
        items = list(items)
        fields = self.fields(len(items), view, camid)
        out = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            where = [f"item {start + k}" if not isinstance(x, (str, Path)) else str(x) for k, x in enumerate(chunk)]
            if self.video:
                batch = {"frames": list(torch.stack([self.clip(x, w) for x, w in zip(chunk, where)]).unbind(1))}
            else:
                batch = {"image": torch.stack([self.pixels(x, w) for x, w in zip(chunk, where)])}
            out.append(self.features(batch, {k: v[start : start + len(chunk)] for k, v in fields.items()}))
        if not out:
            return np.zeros((0, int(self.method.embed_dim)), dtype=np.float32)
        return np.concatenate(out)

    @torch.no_grad()
    def features(self, batch: dict, fields: dict) -> np.ndarray:
        """L2-normalised test features of a batch of resized uint8 pixels (``image`` (N, 3, H, W),
        or ``frames``: T tensors (N, 3, H, W)) with its ``view`` and ``camid`` index tensors."""
        x = model_inputs(batch, self.device, stats=self.method.pixel_stats)
        feature, _ = self.method.test_outputs(x, **fields)
        return F.normalize(feature.float(), dim=1).cpu().numpy()


def load(run_or_checkpoint: str | Path, *, device: str = "auto") -> Model:
    """The trained model of a run folder or ``checkpoint.pt``, on ``device`` (auto: CUDA when present)."""
    device = device_for(device, 0)
    method, transforms, info = build_model_from_checkpoint(run_or_checkpoint, device=device)
    return Model(method, info, device, transforms)

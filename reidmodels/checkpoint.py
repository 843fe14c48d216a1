"""Checkpoints: written whole or not at all, read back as plain data only, never code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .methods import Method, get_method

__all__ = ["file_hash", "load_trained", "read_checkpoint", "resume_state", "save_checkpoint"]


def _plain(value):
    """Numbers, strings, lists and dicts only: what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def save_checkpoint(out: Path, model, optimizer, state: dict) -> None:
    tmp = out / "checkpoint.pt.tmp"
    # schedules may leave numpy floats in the optimizer's lr: _plain makes everything plain data
    torch.save({"model": model.state_dict(), **_plain({"optimizer": optimizer.state_dict(), **state})}, tmp)
    tmp.replace(out / "checkpoint.pt")  # a crash never leaves half a checkpoint


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents: tensors, numbers, strings, lists and dicts only, never code.

    ``weights_only=True`` makes torch refuse any pickled object that is not plain data,
    so a hostile checkpoint cannot run anything when it is loaded.
    """
    import pickle

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: refused: not a plain-data checkpoint ({_last_line(exc)}). "
            "reidmodels never unpickles objects; use a checkpoint written by `reidmodels train`"
        ) from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise ValueError(f"{path}: not a reidmodels checkpoint (no 'model' state)")
    return saved


def _last_line(exc: Exception) -> str:
    """The line of torch's long weights_only message that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if "Unsupported" in line or "GLOBAL" in line]
    return (lines[0] if lines else str(exc).splitlines()[0])[:300]


def resume_state(path: Path, model: nn.Module, resume: bool) -> dict:
    if not (resume and path.is_file()):
        return {}
    saved = read_checkpoint(path)
    model.load_state_dict(saved["model"])
    keep = ("epochs_done", "stage", "stage_start", "log", "step", "optimizer", "scaler", "position")
    return {k: saved[k] for k in keep if k in saved}


def load_trained(checkpoint: str | Path, device: torch.device) -> tuple[Method, dict]:
    """The trained method of a run folder (or checkpoint file), in eval mode, and its facts."""
    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (run `reidmodels train` first)")
    saved = read_checkpoint(path)
    if "method" not in saved:
        raise ValueError(f"{path}: written by an older reidmodels (no method name); train again")
    method = get_method(saved["method"])
    size = tuple(saved["recipe"]["image_size"])
    model = method.build(
        saved["facts"], backbone=saved["backbone"], pretrained=None, image_size=size, **saved["options"]
    )
    model.load_state_dict(saved["model"])
    info = {k: saved[k] for k in ("method", "recipe", "config", "facts")} | {"sha256": file_hash(path)}
    return model.to(device).eval(), info


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]

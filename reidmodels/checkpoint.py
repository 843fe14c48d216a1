"""Checkpoints: one layout, written whole or not at all, read back as plain data only, never code.

``checkpoint.pt`` holds ``model`` (the state dict), ``optimizer`` and ``scaler`` (the
stage in progress), the run's :class:`Progress`, what rebuilds the model (``method``,
``facts``, ``backbone``, ``options``, ``recipe``, ``config``) and, when written
mid-epoch, ``position`` (sampler, loader and random states). ``reidmodels.factory``
rebuilds a model from it; the trainer resumes from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["Progress", "file_hash", "read_checkpoint", "resume_state", "save_checkpoint"]


@dataclass
class Progress:
    """Where a run stands: epochs done per stage, the stage in progress, the per-epoch log,
    optimizer steps so far (all stages) and the step each stage began at (warm-ups count from it)."""

    epochs_done: dict = field(default_factory=dict)
    stage: str | None = None
    log: list = field(default_factory=list)
    step: int = 0
    stage_start: dict = field(default_factory=dict)

    @classmethod
    def of(cls, state: dict) -> Progress:
        """The progress a checkpoint records (an empty one for a fresh run)."""
        return cls(
            dict(state.get("epochs_done", {})), state.get("stage"), list(state.get("log", [])),
            state.get("step", 0), dict(state.get("stage_start", {})),
        )  # fmt: skip

    def state(self, scaler) -> dict:
        """What a checkpoint records of it, with the AMP scaler's state."""
        return {
            "epochs_done": self.epochs_done,
            "stage": self.stage,
            "log": self.log,
            "step": self.step,
            "stage_start": self.stage_start,
            "scaler": scaler.state_dict(),
        }


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


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]

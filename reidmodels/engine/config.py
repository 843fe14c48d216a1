"""What a training run is told: :class:`TrainConfig`, read from a params file by ``load_config``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig", "load_config"]


@dataclass
class TrainConfig:
    # a converted dataset (reiddata convert): a folder or a URL; a list of them trains on all
    # at once, identities and cameras namespaced per dataset (reiddata.combine)
    data: str | list[str]
    out: str  # run folder: checkpoint.pt, train_log.csv, config.json, recipe.json
    method: str  # a name of reidmodels.METHODS
    backbone: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag (online) or local checkpoint (ResNet methods: torchvision's)
    options: dict = field(default_factory=dict)  # the method's constructor options (prompts, shared_tokens, ...)
    hparams: dict = field(default_factory=dict)  # overrides of the method's official recipe: p, k, stages: {...}
    workers: int = 2
    device: str = "auto"  # auto: CUDA when present
    amp: bool = True  # only on CUDA
    seed: int = 0
    resume: bool = True
    checkpoint_every: int | None = None  # also checkpoint every N steps, mid-epoch (resumes exactly there)
    trace: bool = False  # write trace-rank<r>.jsonl: each step's sample keys and loss, per rank
    max_steps_per_epoch: int | None = None  # for smoke runs
    eval_every: int | None = None  # evaluate every N epochs of the last stage (the official EVAL_PERIOD)
    eval_data: str | None = None  # the dataset to evaluate on (default: data)


def load_config(cls, path: str | Path, section: str | Sequence[str], **overrides):
    """A config dataclass from YAML sections of a params file, with overrides.

    ``section`` is a key or a dotted path (``runs.NAME.train``); several sections
    are merged in order, later keys replacing earlier ones (shared defaults, then a run's).
    """
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    values: dict = {}
    for name in [section] if isinstance(section, str) else section:
        node = document
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{path}: no section {name!r} (check the name against the file)")
            node = node[part]
        if node is not None and not isinstance(node, dict):
            raise ValueError(f"{path} [{name}]: expected a mapping of settings, found {type(node).__name__}")
        values.update(node or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path} [{section}]: unknown keys {unknown}; allowed: {sorted(names)}")
    return cls(**values)

"""The one way to build a model, as open_clip's ``factory``: ``build_model`` sizes a method
for a dataset (or the facts a checkpoint kept of one); ``build_model_from_checkpoint``
rebuilds a trained one and gives it with its transforms, as ``create_model_and_transforms``
does. Training, evaluation, ``reidmodels.load`` and the public API all build through here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import file_hash, read_checkpoint
from .inputs import Transforms, transforms_for
from .methods import Method, get_method, open_for

__all__ = ["build_model", "build_model_from_checkpoint"]


def build_model(
    name: str,
    *,
    dataset=None,
    facts: dict | None = None,
    backbone: str = "ViT-B-16",
    pretrained: str | None = None,
    image_size: tuple[int, int] | None = None,
    **options,
) -> Method:
    """Method ``name`` sized for a converted ``dataset`` (a path, URL, several of them or an
    opened dataset), or for the ``facts`` of one (``reidmodels.methods.dataset_facts``).

    Identities and attribute heads come from the manifest; ``options`` go to the method's
    constructor (prompt counts, shared tokens...). ``pretrained``: an open_clip tag
    (online) or a local checkpoint (ResNet methods: a torchvision file).
    ``image_size`` defaults to the method's recipe. ``model.stages``,
    ``model.trainable_parameters(stage)`` and ``model.embed(x)`` are the public API;
    ``requires_grad`` is set on what some stage trains.
    """
    cls = get_method(name)
    if (dataset is None) == (facts is None):
        raise ValueError("build_model needs a dataset or the facts of one (not both)")
    if facts is None:
        _, facts = open_for(cls, dataset)
    size = tuple(image_size or cls.recipe.image_size)
    model = cls.build(facts, backbone=backbone, pretrained=pretrained, image_size=size, **options)
    model.set_trainable()
    return model


def build_model_from_checkpoint(checkpoint: str | Path, *, device: torch.device) -> tuple[Method, Transforms, dict]:
    """The trained method of a run folder (or ``checkpoint.pt``) on ``device`` in eval mode,
    its transforms (the recipe's size, resize kernels and normalisation), and what the
    checkpoint says of it: method, recipe, config, facts and the file's sha256."""
    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (run `reidmodels train` first)")
    saved = read_checkpoint(path)
    if "method" not in saved:
        raise ValueError(f"{path}: written by an older reidmodels (no method name); train again")
    size = tuple(saved["recipe"]["image_size"])
    model = build_model(
        saved["method"], facts=saved["facts"], backbone=saved["backbone"], image_size=size, **saved["options"]
    )
    model.load_state_dict(saved["model"])
    info = {k: saved[k] for k in ("method", "recipe", "config", "facts")} | {"sha256": file_hash(path)}
    return model.to(device).eval(), transforms_for(saved["recipe"], type(model).pixel_stats), info

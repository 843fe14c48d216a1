"""The methods, one module each, and the registry the engine and ``build_model`` use.

``METHODS`` maps a name to its class (a :class:`reidmodels.methods.base.Method`). A new
method is a module here with one class, added to ``_CLASSES``; the engine needs nothing
more.
"""

from __future__ import annotations

from .base import Method, Recipe, StagePlan, dataset_facts
from .cerberus import Cerberus
from .clip_reid import CLIPReID
from .clip_video import CLIPVideo
from .ft_clip import FTCLIP
from .latex import LATex
from .promptsg import PromptSG
from .vsla_clip import VSLACLIP

__all__ = ["METHODS", "Method", "Recipe", "StagePlan", "build_model", "dataset_facts", "get_method"]

_CLASSES: tuple[type[Method], ...] = (CLIPReID, CLIPVideo, LATex, Cerberus, VSLACLIP, FTCLIP, PromptSG)
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in _CLASSES}


def get_method(name: str) -> type[Method]:
    """The class of method ``name``; the error lists the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def build_model(
    name: str,
    *,
    dataset,
    backbone: str = "ViT-B-16",
    pretrained: str | None = None,
    image_size: tuple[int, int] | None = None,
    **options,
) -> Method:
    """Method ``name`` sized for a converted ``dataset`` (a path, URL or ``reiddata.ReidDataset``).

    ``build_model("latex", dataset="shards/agreid-v2", prompts=128, shared_tokens=16)``:
    identities and attribute heads come from the manifest. ``pretrained``: an open_clip
    tag (online) or a local checkpoint (Cerberus: a torchvision ResNet-50 file).
    ``image_size`` defaults to the method's recipe. ``model.stages``,
    ``model.trainable_parameters(stage)`` and ``model.embed(x)`` are the public API.
    """
    from reiddata import ReidDataset, open_dataset

    cls = get_method(name)
    data = dataset if isinstance(dataset, ReidDataset) else open_dataset(dataset)
    facts = dataset_facts(data)
    if facts["kind"] != cls.kind:
        raise ValueError(f"method {name} trains on {cls.kind} datasets; {data.path} holds {facts['kind']}")
    size = tuple(image_size or cls.recipe.image_size)
    model = cls.build(facts, backbone=backbone, pretrained=pretrained, image_size=size, **options)
    trained = dict(model.trainable_parameters())
    for name, p in model.named_parameters():  # what no stage trains says so
        p.requires_grad_(name in trained)
    return model

"""The methods, one module each, and the registry ``build_model`` and the engine use.

``METHODS`` maps a name to its class (a :class:`reidmodels.methods.base.Method`). A new
method is a module here with one class, added to ``_CLASSES``; the engine needs nothing
more. The parts methods share live beside them: ``recipe``, ``solver``, ``heads``,
``prompts`` and ``facts``.
"""

from __future__ import annotations

from .base import Method
from .cerberus import Cerberus
from .clip_reid import CLIPReID
from .clip_video import CLIPVideo
from .facts import dataset_facts, open_for
from .ft_clip import FTCLIP
from .latex import LATex
from .promptsg import PromptSG
from .recipe import Recipe, StagePlan
from .vsla_clip import VSLACLIP

__all__ = ["METHODS", "Method", "Recipe", "StagePlan", "dataset_facts", "get_method", "open_for"]

_CLASSES: tuple[type[Method], ...] = (CLIPReID, CLIPVideo, LATex, Cerberus, VSLACLIP, FTCLIP, PromptSG)
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in _CLASSES}


def get_method(name: str) -> type[Method]:
    """The class of method ``name``; the error lists the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]

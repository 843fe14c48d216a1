"""The shape every method has, and the facts a method declares as data.

A method is an ``nn.Module`` subclass of :class:`Method` in a module of its own. It
declares its official hyper-parameters (:class:`Recipe`: batch shape, augmentation,
and per stage a :class:`StagePlan` with optimiser, schedule and epoch length), the
batch fields it needs, its pixel statistics, and implements:

- ``forward(batch, stage)``: the outputs its loss needs (one call, so DDP sees it);
- ``loss(out, batch, stage, recipe)``;
- ``trains(name, stage)``: whether parameter ``name`` learns in ``stage``;
- ``embed(x, **fields)``: the L2-normalised retrieval feature (``embed_dim`` long);
- ``build(facts, ...)`` when it is not a CLIP backbone + ``cls(backbone, num_classes)``;
- optionally ``parameter_groups`` (own rates), ``begin_stage`` (e.g. cache text
  features), ``stage_features`` (a stage trained on features computed once),
  ``test_outputs`` (predictions beside the feature) and ``extra_metrics`` (attribute
  recognition, attribute search).

The engine (``reidmodels.engine``) trains and evaluates any method through these,
and knows none by name. The parts methods share sit beside this module: the recipe
(``recipe``), the solver (``solver``: optimiser groups, schedules), heads (``heads``:
the BNNeck), prompts (``prompts``: template slots, prompt learners) and what a method
reads of a dataset (``facts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reiddata.shard_format import VIEWS  # a batch carries the view as its index here

from .heads import BNNeck
from .recipe import Recipe, StagePlan
from .solver import parameter_groups

__all__ = ["CLIP_MEAN", "HALF", "IMAGENET_MEAN", "VIEWS", "Method", "Recipe", "StagePlan", "unit"]

CLIP_MEAN = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))  # OpenAI CLIP's
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # to [-1, 1]: CLIP-ReID's and LATex's configs
IMAGENET_MEAN = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class Method(nn.Module):
    """The base of every method (see the module docstring)."""

    name: ClassVar[str]
    kind: ClassVar[str] = "image"  # the dataset kind it trains on: image | video
    recipe: ClassVar[Recipe]
    fields: ClassVar[tuple[str, ...]] = ()  # batch fields beyond images and labels: view, attributes, sid
    sid_groups: ClassVar[tuple[str, ...]] = ()  # the order of the ``sid`` columns, when it needs them
    pixel_stats: ClassVar[tuple] = CLIP_MEAN

    @classmethod
    def build(cls, facts: dict, *, backbone: str, pretrained: str | None, image_size: tuple, **options) -> Method:
        """The method sized for a dataset's ``facts`` (see ``dataset_facts``). This default
        builds a CLIP backbone and calls ``cls(backbone, num_classes, **options)``."""
        from ..backbone import build_clip

        clip = build_clip(backbone, pretrained=pretrained, image_size=tuple(image_size))
        return cls(clip, facts["num_classes"], **options)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.recipe.stages)

    @property
    def embed_dim(self) -> int:
        """The size of ``embed``'s output."""
        raise NotImplementedError

    def trains(self, name: str, stage: str) -> bool:
        raise NotImplementedError

    def frozen(self) -> set[str]:
        """Names of the parameters no stage trains, whatever ``trains`` says: the BNNecks'
        shifts (frozen where they are built, ``heads.BNNeck``)."""
        return {f"{name}.bias" for name, m in self.named_modules() if isinstance(m, BNNeck)}

    def trainable_parameters(self, stage: str | None = None) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of what learns in ``stage`` (None: in any stage)."""
        stages = self.stages if stage is None else (stage,)
        frozen = self.frozen()
        for name, p in self.named_parameters():
            if name not in frozen and any(self.trains(name, s) for s in stages):
                yield name, p

    def set_trainable(self, stage: str | None = None) -> None:
        """``requires_grad`` on exactly the parameters that learn in ``stage`` (None: in any)."""
        trained = {id(p) for _, p in self.trainable_parameters(stage)}
        for p in self.parameters():
            p.requires_grad_(id(p) in trained)

    def parameter_groups(self, stage: str, recipe: Recipe) -> list[dict]:
        """Optimiser groups of what learns in ``stage`` (``solver.parameter_groups``: the
        official bias and norm rules); methods add their own rates by overriding."""
        return parameter_groups(self, self.trainable_parameters(stage), recipe.stages[stage])

    def begin_stage(self, stage: str) -> None:
        """Called before a stage's first epoch (after a resume too)."""

    def stage_features(self, stage: str, x: torch.Tensor, batch: dict) -> torch.Tensor:
        """For a ``features`` stage: one feature per sample, computed once, no augmentation."""
        raise NotImplementedError(f"{self.name} has no feature stage {stage!r}")

    def forward(self, batch: dict, stage: str) -> dict:
        raise NotImplementedError

    def loss(self, out: dict, batch: dict, stage: str, recipe: Recipe) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor, **fields) -> torch.Tensor:
        raise NotImplementedError

    def test_outputs(self, x: torch.Tensor, **fields) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The retrieval feature (``embed``) and per-sample predictions evaluated beside it
        (attribute values, SIDs) or None."""
        return self.embed(x, **fields), None

    def extra_metrics(self, data, rows: np.ndarray, predictions: np.ndarray, features: np.ndarray) -> dict:
        """Metrics beyond retrieval from ``predictions`` of the test ``rows`` (and ``features``,
        one row per index row of ``data``)."""
        return {}


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)

"""Heads the methods share: BoT's BNNeck and its classifier."""

from __future__ import annotations

from torch import nn

__all__ = ["BNNeck", "bnneck"]


class BNNeck(nn.BatchNorm1d):
    """Batch norm between the feature and the identity classifier, with no learned shift:
    its bias is frozen here, where it is built, as the official code does
    (``bottleneck.bias.requires_grad_(False)``), and ``Method`` never trains it."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias.requires_grad_(False)


def bnneck(dim: int, num_classes: int) -> tuple[BNNeck, nn.Linear]:
    """A BNNeck and a bias-free classifier, weights drawn with std 0.001 (BoT's init)."""
    classifier = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(classifier.weight, std=0.001)
    return BNNeck(dim), classifier

"""Prompts the methods share: a template's token embeddings around learned slots, and the
prompt learners built on it (CLIP-ReID's per-identity tokens, VSLA-CLIP's split ones).

Every text-side method writes its template with a run of placeholder words ``X`` where
learned tokens go; ``template_slots`` tokenizes it once and keeps the embeddings before
and after that run, and ``encode_filled`` puts learned tokens between them and runs the
text encoder (read at the end-of-text token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import CLIPBackbone

__all__ = ["PLACEHOLDER", "TEMPLATE", "PromptLearner", "SplitPromptLearner", "Slots", "encode_filled", "template_slots"]

PLACEHOLDER = "X"  # the word a template holds where learned tokens go
TEMPLATE = "A photo of a {} person."  # CLIP-ReID's


@dataclass(frozen=True)
class Slots:
    """A tokenized template around its learned slots (batch of one)."""

    prefix: torch.Tensor  # (1, start, width): the embeddings before the first slot
    suffix: torch.Tensor  # (1, rest, width): the embeddings after the last slot, padding included
    eot: torch.Tensor  # (1,): the end-of-text position, where the text encoder is read
    start: int  # the first slot's position
    embedded: torch.Tensor  # (1, 77, width): the whole template's embeddings


@torch.no_grad()
def template_slots(backbone: CLIPBackbone, text: str, slots: int) -> Slots:
    """``text`` tokenized and embedded, cut around its first ``slots`` tokens from the first
    placeholder (no slots: a plain text, cut at its end-of-text token)."""
    ids = backbone.tokenize([text])
    embedded = backbone.token_embeddings(ids)
    if slots == 0:
        start = int(ids.argmax(-1))
    else:
        placeholder = int(backbone.tokenize([PLACEHOLDER])[0, 1])
        start = int((ids[0] == placeholder).nonzero()[0])
    prefix, suffix = embedded[:, :start].clone(), embedded[:, start + slots :].clone()
    return Slots(prefix, suffix, ids.argmax(-1), start, embedded)


def encode_filled(backbone: CLIPBackbone, prefix, parts: list[torch.Tensor], suffix, eot) -> torch.Tensor:
    """Text features of ``prefix + parts + suffix`` (the parts: (n, k, width) each)."""
    n = parts[0].shape[0]
    tokens = torch.cat([prefix.expand(n, -1, -1), *(p.to(prefix.dtype) for p in parts), suffix.expand(n, -1, -1)], 1)
    return backbone.encode_text_embeddings(tokens, eot.expand(n))


class PromptLearner(nn.Module):
    """CLIP-ReID's per-identity text tokens in a fixed template, through the frozen text encoder."""

    def __init__(self, backbone: CLIPBackbone, num_classes: int, tokens: int = 4, template: str = TEMPLATE) -> None:
        super().__init__()
        slots = template_slots(backbone, template.format(" ".join([PLACEHOLDER] * tokens)), tokens)
        self.register_buffer("prefix", slots.prefix)
        self.register_buffer("suffix", slots.suffix)
        self.register_buffer("eot", slots.eot)
        self.ctx = nn.Parameter(torch.randn(num_classes, tokens, slots.prefix.shape[-1]) * 0.02)

    def forward(self, backbone: CLIPBackbone, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Text features of the identities ``labels`` (all when None)."""
        ctx = self.ctx if labels is None else self.ctx[labels]
        return encode_filled(backbone, self.prefix, [ctx], self.suffix, self.eot)


class SplitPromptLearner(nn.Module):
    """VSLA-CLIP's text "[SOS] P1..P8 S1..S4 P9..P16 . [EOS]": 16 shared tokens around 4 per identity, no words."""

    SHARED, OWN = 16, 4

    def __init__(self, backbone: CLIPBackbone, num_classes: int) -> None:
        super().__init__()
        n = self.SHARED + self.OWN
        slots = template_slots(backbone, " ".join([PLACEHOLDER] * n) + ".", n)
        self.register_buffer("prefix", slots.prefix)  # [SOS]
        self.register_buffer("suffix", slots.suffix)  # ". [EOS]" and padding
        self.register_buffer("eot", slots.eot)
        width = slots.prefix.shape[-1]
        self.shared = nn.Parameter(torch.randn(self.SHARED, width) * 0.02)
        self.ctx = nn.Parameter(torch.randn(num_classes, self.OWN, width) * 0.02)

    def forward(self, backbone: CLIPBackbone, labels: torch.Tensor) -> torch.Tensor:
        n, half = labels.shape[0], self.SHARED // 2
        shared = self.shared.unsqueeze(0).expand(n, -1, -1)
        parts = [shared[:, :half], self.ctx[labels], shared[:, half:]]
        return encode_filled(backbone, self.prefix, parts, self.suffix, self.eot)

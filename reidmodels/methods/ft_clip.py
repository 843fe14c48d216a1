"""FT-CLIP, the VSLA-CLIP paper's fine-tuned CLIP baseline (Table 3): CLIP-ReID's two
stages on tracklets.

The frame mean of the image encoder's features stands for a tracklet. Stage 1 learns the
text tokens: VSLA-CLIP's layout of 16 shared tokens around 4 per identity, against
frame-mean features computed once. Stage 2 trains the whole image encoder and two BNNeck
heads with CLIP-ReID's loss: 0.25 x the two CEs, a Euclidean batch-hard triplet on
three features, and image->text CE. There are no adapters and no platform prompts. The
schedules are CLIP-ReID's and the sampling is VSLA-CLIP's (8 ids x 4 tracklets x 8
frames, ImageNet statistics).
"""

from __future__ import annotations

import dataclasses

from .clip_reid import CLIPReID
from .vsla_clip import VSLACLIP

__all__ = ["FTCLIP"]


class FTCLIP(VSLACLIP):
    name = "ft-clip"
    # VSLA-CLIP's sampling with CLIP-ReID's schedules and loss weights (no SupCon, Euclidean triplet)
    recipe = dataclasses.replace(
        VSLACLIP.recipe,
        stages=dict(CLIPReID.recipe.stages),
        extra={"id_weight": 0.25, "i2t_weight": 1.0, "supcon_weight": 0.0, "triplet_metric": "euclidean"},
    )

    def __init__(self, backbone, num_classes: int) -> None:
        super().__init__(backbone, num_classes, adapters=False)

    def trains(self, name: str, stage: str) -> bool:
        if stage == "stage1":
            return name.startswith("prompt_learner.")
        if name in ("bottleneck.bias", "bottleneck_proj.bias"):
            return False
        return name.startswith(("backbone.clip.visual.", "bottleneck", "classifier"))

"""FT-CLIP, the VSLA-CLIP paper's fine-tuned CLIP baseline (Table 3), as its official code
trains it (``train_fine_tune.py``, ``configs/ft/vit_ft.yml``).

The frame mean of the image encoder's features stands for a tracklet. Stage 1 learns the
text tokens (VSLA-CLIP's layout of 16 shared tokens around 4 per identity) against
frame-mean features computed once, as VSLA-CLIP's stage 1. Stage 2 trains the whole image
encoder and two BNNeck heads: Adam 5e-6 (biases 2x, weight decay 2.5e-4, biases 1e-4),
10-epoch warm-up from 0.1, x0.1 at epochs 60 and 90, 120 epochs; loss 0.25 x the two CEs,
a **cosine** batch-hard triplet on three features (the code refuses Euclidean),
image->text CE and SupCon both ways (weight 1 each). No adapters, no platform prompts.
VSLA-CLIP's sampling (the video identity sampler, 8 ids x 4 tracklets x 8 frames,
ImageNet statistics) and input pipeline.

Initial weights: the official run replaces both encoders with ViFi-CLIP's
(``USE_VIFI_WEIGHT: True``): the option ``vifi: /path/vifi_weight.pth`` (a train section's
``options``) loads such a file over the ``pretrained`` CLIP (``reidmodels.backbone.load_vifi``;
the token table stays CLIP's, as the official code keeps it); without it FT-CLIP starts from
``pretrained`` alone, as VSLA-CLIP's own config does.
"""

from __future__ import annotations

import dataclasses

from ..backbone import load_vifi
from .vsla_clip import VSLACLIP

__all__ = ["FTCLIP"]


class FTCLIP(VSLACLIP):
    name = "ft-clip"
    # VSLA-CLIP's stage 1, sampling, pipeline and loss; stage 2 as configs/ft/vit_ft.yml
    recipe = dataclasses.replace(
        VSLACLIP.recipe,
        stages={
            "stage1": VSLACLIP.recipe.stages["stage1"],
            "stage2": dataclasses.replace(VSLACLIP.recipe.stages["stage2"], lr=5e-6),
        },
        id_weight=0.25,
        supcon_weight=1.0,
        triplet_metric="cosine",
    )

    def __init__(self, backbone, num_classes: int, *, vifi: str | None = None) -> None:
        super().__init__(backbone, num_classes, adapters=False)
        if vifi is not None:
            load_vifi(backbone, vifi)

    def trains(self, name: str, stage: str) -> bool:
        if stage == "stage1":
            return name.startswith("prompt_learner.")
        return name.startswith(("backbone.clip.visual.", "bottleneck", "classifier"))

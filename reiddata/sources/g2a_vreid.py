"""G2A-VReID (Zhang et al.): ground (camera 1) to UAV (camera 2) video ReID, MARS format.

v1 from ``FHR-L/VSLA-CLIP`` (class ``G2A``): 4-character pid folders, camera at
``name[5]``; 2,788 ids, 5,576 tracklets, 185,907 frames. v2 (class ``G2A2`` of
``FHR-L/VSLA-CLIP-``): 5-character pid folders, camera at ``name[6]``, and
``info/query_IDX_A2G.mat`` (variable ``query_IDX_A2G``): aerial queries against the
other test tracklets, its own protocol ``a2g``. v2 is recognised by that file. No
literal G2A frame name is public, so names are held to the MARS rule only: pid
folder, ``C``, camera digit, then anything ending in ``.jpg``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._mars_format import REQUIRED, NameRule, parse_base
from .base import Parsed, Protocol, Source, find_base

NAME = "g2a-vreid"
CAMERA_VIEWS = {1: "ground", 2: "aerial"}  # camera 1 ground, camera 2 UAV
G2A = Protocol(
    "g2a", "query_IDX ground tracklets vs the other test tracklets (UAV)", "camera", ("ground",), ("aerial",)
)
A2G = Protocol(
    "a2g",
    "query_IDX_A2G aerial tracklets vs the other test tracklets (ground); v2 only",
    "camera",
    ("aerial",),
    ("ground",),
)
VARIANTS = {  # variant -> (name rule, protocols with their query lists)
    "v1": (
        NameRule(re.compile(r"^(\d{4}|00-1)C(\d)[^/]*\.jpg$"), "0001C1T0001F001.jpg", pid_chars=4),
        {"g2a": ("query_IDX.mat", "query_IDX")},
    ),
    "v2": (
        NameRule(re.compile(r"^(\d{5}|000-1)C(\d)[^/]*\.jpg$"), "00001C1T0001F001.jpg", pid_chars=5),
        {"g2a": ("query_IDX.mat", "query_IDX"), "a2g": ("query_IDX_A2G.mat", "query_IDX_A2G")},
    ),
}
NESTED = ("G2A-VReID", "G2A-VReID.v2")


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=REQUIRED, nested=NESTED)
    variant = "v2" if (base / "info" / "query_IDX_A2G.mat").is_file() else "v1"
    rule, lists = VARIANTS[variant]
    return parse_base(
        base,
        source=NAME,
        variant=f"G2A-VReID.{variant}",
        rule=rule,
        camera_views=CAMERA_VIEWS,
        protocols=tuple(p for p in (G2A, A2G) if p.name in lists),
        query_lists=lists,
    )


SOURCE = Source(
    name=NAME,
    title="G2A-VReID v1/v2 video tracklets (ground camera 1, UAV camera 2), MARS format",
    layout="""[ROOT/]                                     MARS format (see `mars`)
    info/train_name.txt info/test_name.txt info/tracks_{train,test}_info.mat info/query_IDX.mat
    info/query_IDX_A2G.mat                      v2 only: the a2g protocol
    bbox_train/0001/0001C1....jpg               v1: 4-char pid folder (v2: 5-char, 00001/00001C1...)""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=(G2A, A2G),
    parse=parse,
    kind="video",
)

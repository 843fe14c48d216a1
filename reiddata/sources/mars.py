"""MARS (Zheng et al. 2016): 1,261 identities, 6 ground cameras, tracklets in the MARS format.

Layout from ``FHR-L/VSLA-CLIP`` ``datasets/data_manager.py`` (class ``Mars``) and
the MARS evaluation kit: see :mod:`._mars_format`. Frame names are
``0001C1T0001F001.jpg`` (pid folder, camera, tracklet, frame); junk frames sit in
``00-1/`` and their rows (pid -1) are dropped; distractor rows (pid 0) stay in the
gallery as pid 0. Expected: 8,298 train tracklets, 1,980 queries, 11,310 gallery.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._mars_format import REQUIRED, NameRule, parse_base
from .base import Parsed, Protocol, Source, find_base

NAME = "mars"
CAMERA_VIEWS = {c: "ground" for c in range(1, 7)}
PROTOCOLS = (
    # the MARS authors' and VSLA-CLIP's (utils/test_video_reid.py:200-204): queries join the gallery
    Protocol(
        "standard",
        "query_IDX tracklets vs every test tracklet, the queries included; same pid and camera not counted",
        query_in_gallery=True,
    ),
    # torchreid's: the gallery without the queries (140 queries lose their only match)
    Protocol("torchreid", "query_IDX tracklets vs the other test tracklets; same pid and camera not counted"),
)
RULE = NameRule(re.compile(r"^(\d{4}|00-1)C(\d)T\d{4}F\d{3}\.jpg$"), "0001C1T0001F001.jpg", pid_chars=4)
NESTED = ("MARS", "mars")


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=REQUIRED, nested=NESTED)
    return parse_base(
        base,
        source=NAME,
        variant="MARS",
        rule=RULE,
        camera_views=CAMERA_VIEWS,
        protocols=PROTOCOLS,
        query_lists={"standard": ("query_IDX.mat", "query_IDX"), "torchreid": ("query_IDX.mat", "query_IDX")},
    )


SOURCE = Source(
    name=NAME,
    title="MARS video tracklets (6 ground cameras)",
    layout="""[ROOT/]
    info/train_name.txt info/test_name.txt          frame names, tracklet order
    info/tracks_train_info.mat info/tracks_test_info.mat   [start end pid camid], 1-based
    info/query_IDX.mat                              test rows that are queries
    bbox_train/0001/0001C1T0001F001.jpg   bbox_test/...""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
    kind="video",
)

"""Market-1501 (Zheng et al. 2015) with the APR person attributes (Lin et al.).

Layout and counts from torchreid ``data/datasets/image/market1501.py``; attribute
facts checked on the real ``market_attribute.mat``.
Expected: train 751 ids / 12,936 images; query 750 / 3,368; gallery 15,913 kept
(13,115 of 750 ids + 2,798 ``0000`` distractors), 3,819 ``-1`` junk dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..attributes import AttributeSchema, coded, onehot
from .base import Parsed, Protocol, Source, find_base, parse_folder_splits

NAME = "market1501"
FOLDERS = (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test"))
NESTED = ("Market-1501-v15.09.15",)
# pid (4 digits or -1), camera, sequence, frame, box. The camera is checked apart so
# that c7 gets "unexpected camera" rather than "bad name".
PATTERN = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
SHOWN = "0002_c1s1_000451_03.jpg"
CAMERA_VIEWS = {c: "ground" for c in range(1, 7)}
JUNK = "-1"  # unusable detections: dropped from every split
DISTRACTOR = "0000"  # DPM false detections: kept in the gallery, never a match
PROTOCOLS = (Protocol("standard", "query/ vs bounding_box_test/; same pid and camera not counted"),)

YES_NO = ("no", "yes")
SCHEMA = AttributeSchema(
    name="market1501-apr",
    top_key="market_attribute",
    parts=("test", "train"),  # the real file stores test first
    attributes=(
        coded("gender", ("male", "female")),
        coded("age", ("young", "teenager", "adult", "old")),
        coded("hair", ("short", "long")),
        coded("hat", YES_NO),
        coded("up", ("long", "short")),  # sleeve length
        onehot("upcolor", ("black", "white", "red", "purple", "yellow", "gray", "blue", "green"), prefix="up"),
        coded("down", ("long", "short")),  # lower-body clothing length
        coded("clothes", ("dress", "pants")),
        onehot(
            "downcolor",
            ("black", "white", "pink", "purple", "yellow", "gray", "blue", "green", "brown"),
            prefix="down",
        ),
        coded("backpack", YES_NO),
        coded("bag", YES_NO),
        coded("handbag", YES_NO),
    ),
    groups=(
        ("head", ("hat", "hair")),
        ("upper", ("upcolor", "up")),
        ("lower", ("downcolor", "down", "clothes")),
        ("identity", ("gender", "age")),
        ("carrying", ("backpack", "bag", "handbag")),
    ),
    filenames=("market_attribute.mat",),
)


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=[f for _, f in FOLDERS], nested=NESTED)
    return parse_folder_splits(
        base,
        source=NAME,
        variant="Market-1501-v15.09.15",
        folders=FOLDERS,
        pattern=PATTERN,
        shown=SHOWN,
        camera_views=CAMERA_VIEWS,
        protocol=PROTOCOLS[0].name,
        junk=JUNK,
        distractor=DISTRACTOR,
    )


SOURCE = Source(
    name=NAME,
    title="Market-1501 (6 cameras) with APR attributes",
    layout="""[ROOT/]Market-1501-v15.09.15/
    bounding_box_train/0002_c1s1_000451_03.jpg   train
    query/...                                    query
    bounding_box_test/...                        gallery (-1 junk dropped, 0000 distractors kept)
    market_attribute.mat                         optional (or attribute/, or --attributes FILE)""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
    attributes=SCHEMA,
)

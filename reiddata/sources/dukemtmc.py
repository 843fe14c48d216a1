"""DukeMTMC-reID (Zheng et al. 2017) with the APR person attributes (Lin et al.).

Layout from torchreid ``data/datasets/image/dukemtmcreid.py``; attribute facts
checked on the real ``duke_attribute.mat``. No junk ids. Expected: train 702 ids /
16,522; query 702 / 2,228; gallery 17,661 images of 1,110 ids (408 gallery-only).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..attributes import AttributeSchema, coded, onehot
from .base import Parsed, Protocol, Source, find_base, parse_folder_splits

NAME = "dukemtmc-reid"
FOLDERS = (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test"))
NESTED = ("DukeMTMC-reID",)
PATTERN = re.compile(r"^(\d{4})_c(\d)_f(\d{7})\.jpg$")
SHOWN = "0001_c2_f0046182.jpg"
CAMERA_VIEWS = {c: "ground" for c in range(1, 9)}
PROTOCOLS = (Protocol("standard", "query/ vs bounding_box_test/; same pid and camera not counted"),)

YES_NO = ("no", "yes")
SCHEMA = AttributeSchema(
    name="dukemtmc-reid-apr",
    top_key="duke_attribute",
    parts=("train", "test"),  # the real file stores train first
    attributes=(
        coded("gender", ("male", "female")),
        coded("hat", YES_NO),
        # Train ids 0370 and 0679 have top = 0 in the real file: unlabelled, not "short".
        coded("top", ("short", "long"), zero="unknown"),
        onehot("upcolor", ("black", "white", "red", "purple", "gray", "blue", "green", "brown"), prefix="up"),
        onehot("downcolor", ("black", "white", "red", "gray", "blue", "green", "brown"), prefix="down"),
        coded("shoes", ("dark", "light")),
        coded("boots", YES_NO),
        coded("backpack", YES_NO),
        coded("bag", YES_NO),
        coded("handbag", YES_NO),
    ),
    groups=(
        ("head", ("hat",)),
        ("upper", ("upcolor", "top")),
        ("lower", ("downcolor", "shoes", "boots")),
        ("identity", ("gender",)),
        ("carrying", ("backpack", "bag", "handbag")),
    ),
    filenames=("duke_attribute.mat",),
)


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=[f for _, f in FOLDERS], nested=NESTED)
    return parse_folder_splits(
        base,
        source=NAME,
        variant="DukeMTMC-reID",
        folders=FOLDERS,
        pattern=PATTERN,
        shown=SHOWN,
        camera_views=CAMERA_VIEWS,
        protocol=PROTOCOLS[0].name,
    )


SOURCE = Source(
    name=NAME,
    title="DukeMTMC-reID (8 cameras) with APR attributes",
    layout="""[ROOT/]DukeMTMC-reID/
    bounding_box_train/0001_c2_f0046182.jpg      train
    query/...                                    query
    bounding_box_test/...                        gallery
    duke_attribute.mat                           optional (or attribute/, or --attributes FILE)""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
    attributes=SCHEMA,
)

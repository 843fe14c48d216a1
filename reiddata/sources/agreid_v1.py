"""AG-ReID.v1 (Nguyen et al. 2023): UAV and CCTV, protocols by folder.

Layout from ``huynguyen792/AG-ReID`` ``agreidtools/datasets/agreid.py``. Two
protocols share the test identities: A->G (``query_all_c0`` vs
``bounding_box_test_all_c3``) and G->A (``query_all_c3`` vs
``bounding_box_test_all_c0``); each image keeps its folder in ``source`` and its role
in the protocol its folder belongs to. Only cameras C0 (UAV) and C3 (CCTV) exist:
old downloads carry stray C2 images (AG-ReID issue #4), which are rejected.
Expected: 388 ids (199 train, 189 test), 21,983 images.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import bad_input
from . import _agreid_common as agreid
from .base import Parsed, Protocol, Source, check_camera, find_base, list_jpgs

NAME = "agreid-v1"
CAMERA_VIEWS = {0: "aerial", 3: "ground"}  # C0 UAV, C3 CCTV
PROTOCOLS = (
    Protocol("a2g", "aerial query_all_c0 vs ground bounding_box_test_all_c3", "camera", ("aerial",), ("ground",)),
    Protocol("g2a", "ground query_all_c3 vs aerial bounding_box_test_all_c0", "camera", ("ground",), ("aerial",)),
)
# folder, split, the one camera it may hold (None: any), (protocol, role) of its images
FOLDERS = (
    ("bounding_box_train", "train", None, None),
    ("query_all_c0", "query", 0, ("a2g", "query")),
    ("query_all_c3", "query", 3, ("g2a", "query")),
    ("bounding_box_test_all_c0", "gallery", 0, ("g2a", "gallery")),
    ("bounding_box_test_all_c3", "gallery", 3, ("a2g", "gallery")),
)
NESTED = ("AG-ReID",)


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=[f[0] for f in FOLDERS], nested=NESTED)
    parsed = Parsed(base, "AG-ReID.v1", [])
    for folder, split, camera, membership in FOLDERS:
        for path in list_jpgs(base / folder, parsed.ignored):
            name = agreid.parse_name(path, source=NAME)
            view = check_camera(name.camid, CAMERA_VIEWS, path, source=NAME)
            if camera is not None and name.camid != camera:
                raise bad_input(
                    path,
                    f"camera C{name.camid} in {folder}/, which holds only C{camera} images",
                    "move the image to the folder of its camera or remove it",
                )
            roles = (membership,) if membership else ()
            parsed.records.append(name.record(split=split, path=f"{folder}/{path.name}", view=view, roles=roles))
    return parsed


SOURCE = Source(
    name=NAME,
    title="AG-ReID.v1 (UAV C0 + CCTV C3) with 15 QUT attributes",
    layout="""[ROOT/]
    bounding_box_train/P0001T04041A0C0F31.jpg    train (identity = P+T+A)
    query_all_c0/  bounding_box_test_all_c3/     a2g: aerial queries, ground gallery
    query_all_c3/  bounding_box_test_all_c0/     g2a: ground queries, aerial gallery
    qut_attribute_v4_88_attributes.mat           optional (or --attributes FILE)""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
    attributes=agreid.SCHEMA_V1,
)

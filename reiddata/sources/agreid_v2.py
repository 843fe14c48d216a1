"""AG-ReID.v2 (Nguyen et al. 2024): UAV, wearable and CCTV; protocols from list files.

Layout from ``huynguyen792/AG-ReID.v2`` ``agreidtools/datasets/agreidv2.py``: one
folder per identity under ``train_all/``, ``query/`` and ``gallery/``. The four
protocols come from the ``exp*.txt`` lists, whose lines name query and gallery
images relative to the folder holding ``query/``. The lists overlap (an aerial query
is in both A->C and A->W), so each image keeps every role it has, never one.
Real counts: train 51,530; query 8,499; gallery 40,473; 807 train / 808 test ids;
protocol queries 2,356 / 2,209 / 1,811 / 2,340.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from ..errors import bad_input
from . import _agreid_common as agreid
from .base import Parsed, Protocol, Source, check_camera, check_image_entry, find_base, list_jpgs

NAME = "agreid-v2"
CAMERA_VIEWS = {0: "aerial", 2: "wearable", 3: "ground"}  # C0 UAV, C2 wearable, C3 CCTV
PROTOCOLS = (
    Protocol("a2c", "exp1_aerial_to_cctv.txt: aerial queries vs CCTV gallery", "camera", ("aerial",), ("ground",)),
    Protocol(
        "a2w", "exp2_aerial_to_wearable.txt: aerial queries vs wearable gallery", "camera", ("aerial",), ("wearable",)
    ),
    Protocol("c2a", "exp4_cctv_to_aerial.txt: CCTV queries vs aerial gallery", "camera", ("ground",), ("aerial",)),
    Protocol(
        "w2a", "exp5_wearable_to_aerial.txt: wearable queries vs aerial gallery", "camera", ("wearable",), ("aerial",)
    ),
)
LISTS = {
    "a2c": "exp1_aerial_to_cctv.txt",
    "a2w": "exp2_aerial_to_wearable.txt",
    "c2a": "exp4_cctv_to_aerial.txt",
    "w2a": "exp5_wearable_to_aerial.txt",
}
FOLDERS = (("train", "train_all"), ("query", "query"), ("gallery", "gallery"))
# The images may sit one or two folders below the lists and the .mat file.
NESTED = ("AG-ReID.v2", "AG-ReID.v2/AG-ReID.v2")
IDENTITY = re.compile(r"^P\d{4}T\d{5}A[012]$")


def _images(base: Path, parsed: Parsed) -> dict[str, tuple[str, agreid.Name]]:
    """``split_folder/identity/name.jpg`` -> (split, parsed name), in sorted order."""
    out = {}
    for split, folder in FOLDERS:
        for child in sorted((base / folder).iterdir()):
            check_image_entry(child)
            if not child.is_dir():
                if child.suffix == ".jpg":
                    raise bad_input(child, f"image directly in {folder}/: expected {folder}/<P+T+A>/<name>.jpg")
                parsed.ignored[f"not an identity folder in {folder}/"] += 1
                continue
            if not IDENTITY.match(child.name):
                raise bad_input(child, "identity folder is not named P####T#####A# (e.g. P0000T02140A0)")
            for path in list_jpgs(child, parsed.ignored):
                name = agreid.parse_name(path, source=NAME)
                if name.identity != child.name:
                    raise bad_input(path, f"identity {name.identity} filed under the folder of {child.name}")
                check_camera(name.camid, CAMERA_VIEWS, path, source=NAME)
                out[f"{folder}/{child.name}/{path.name}"] = (split, name)
    return out


def _find_list(base: Path, filename: str) -> Path:
    for folder in (base, base.parent):
        if (folder / filename).is_file():
            return folder / filename
    raise bad_input(
        base / filename,
        f"protocol list missing (looked in {base} and {base.parent})",
        "put the four exp*.txt lists next to query/ or one folder up; they define the protocols",
    )


def _roles(base: Path, images: dict[str, tuple[str, agreid.Name]]) -> dict[str, list[tuple[str, str]]]:
    """path -> [(protocol, role)] from the four list files, checked against the tree."""
    roles: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for protocol in PROTOCOLS:
        path = _find_list(base, LISTS[protocol.name])
        seen: dict[str, int] = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            where = f"{path}:{number}"
            role = entry.split("/", 1)[0]
            if role not in ("query", "gallery"):
                raise bad_input(where, f"entry {entry!r} is neither under query/ nor gallery/")
            if entry not in images:
                raise bad_input(where, f"lists {entry}, which is not in {base}", "use the lists of this download")
            if entry in seen:
                raise bad_input(where, f"{entry} is listed again (first on line {seen[entry]})")
            seen[entry] = number
            view = CAMERA_VIEWS[images[entry][1].camid]
            if not protocol.admits(role, view):
                raise bad_input(
                    where, f"{entry} is a {view} image; {protocol.name} {role} holds {protocol.description}"
                )
            roles[entry].append((protocol.name, role))
    return roles


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=[f for _, f in FOLDERS], nested=NESTED)
    parsed = Parsed(base, "AG-ReID.v2", [])
    images = _images(base, parsed)
    roles = _roles(base, images)
    for rel, (split, name) in images.items():
        view = CAMERA_VIEWS[name.camid]
        parsed.records.append(name.record(split=split, path=rel, view=view, roles=tuple(roles.get(rel, ()))))
    return parsed


SOURCE = Source(
    name=NAME,
    title="AG-ReID.v2 (UAV C0, wearable C2, CCTV C3) with 15 QUT attributes",
    layout="""[ROOT/][AG-ReID.v2/[AG-ReID.v2/]]
    train_all/P0000T02140A0/P0000T02140A0C0F31.jpg   train (identity = P+T+A)
    query/P.../...   gallery/P.../...                test images
    exp1_aerial_to_cctv.txt exp2_aerial_to_wearable.txt exp4_cctv_to_aerial.txt
    exp5_wearable_to_aerial.txt                      protocols: 'query/P.../NAME.jpg' lines
    qut_attribute_v8.mat                             optional
    (lists and .mat next to train_all/ or one folder up)""",
    splits=("train", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
    attributes=agreid.SCHEMA_V2,
)

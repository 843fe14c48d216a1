"""CARGO (Zhang et al., CVPR 2024): a synthetic (Unity) aerial-ground city, 13 cameras.

Layout from ``LinlyAC/VDT-AGPReID`` ``fastreid/data/datasets/cargo.py``: one folder
per camera under each split. Cam1-5 are aerial, Cam6-13 ground. Four protocols over
the same query/gallery: ALL; A<->A and G<->G keep one view on both sides; A<->G
compares views instead of cameras, so same-view positives are discarded and only
cross-view matches count. No attributes, no junk.
Expected: train 51,451 / 2,500 ids; query 312 (G<->G 134, A<->A 178); gallery 50,712.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import bad_input
from .base import Parsed, Protocol, Record, Source, check_camera, check_image_entry, find_base, list_jpgs, match_name

NAME = "cargo"
FOLDERS = ("train", "query", "gallery")
CAMERA_VIEWS = {c: "aerial" if c <= 5 else "ground" for c in range(1, 14)}
PROTOCOLS = (
    Protocol("all", "every query vs every gallery image; same pid and camera not counted"),
    Protocol("a2a", "aerial queries vs aerial gallery (A<->A)", "camera", ("aerial",), ("aerial",)),
    Protocol("g2g", "ground queries vs ground gallery (G<->G)", "camera", ("ground",), ("ground",)),
    Protocol("a2g", "every query vs every gallery image; same pid and view not counted (A<->G)", "view"),
)
PATTERN = re.compile(r"^Cam(\d+)_(day|night)_(\d+)_(\d+)\.jpg$")
SHOWN = "Cam2_day_2519_320.jpg"
CAMERA_FOLDER = re.compile(r"^Cam(\d+)$")
NESTED = ("CARGO",)


def _camera_folders(folder: Path, parsed: Parsed) -> list[tuple[int, Path]]:
    out = []
    for child in sorted(folder.iterdir()):
        check_image_entry(child)
        if not child.is_dir():
            parsed.ignored[f"not a camera folder in {folder.name}/"] += 1
            continue
        m = CAMERA_FOLDER.match(child.name)
        if m is None:
            raise bad_input(child, "folder is not a camera folder Cam1 ... Cam13", "remove it or move it out")
        check_camera(int(m.group(1)), CAMERA_VIEWS, child, source=NAME)
        out.append((int(m.group(1)), child))
    return out


def parse(root: Path) -> Parsed:
    base = find_base(root, source=NAME, required=FOLDERS, nested=NESTED)
    parsed = Parsed(base, "CARGO", [])
    for split in FOLDERS:
        for camera, folder in _camera_folders(base / split, parsed):
            for path in list_jpgs(folder, parsed.ignored):
                m = match_name(PATTERN, path, source=NAME, shown=SHOWN)
                camid = int(m.group(1))
                if camid != camera:
                    raise bad_input(path, f"camera {camid} in its name but filed under Cam{camera}/")
                view = CAMERA_VIEWS[camid]
                roles = ()
                if split != "train":
                    roles = tuple((p.name, split) for p in PROTOCOLS if p.admits(split, view))
                parsed.records.append(
                    Record(
                        split=split,
                        path=f"{split}/{folder.name}/{path.name}",
                        pid_raw=m.group(3),
                        pid=int(m.group(3)),
                        camid=camid,
                        view=view,
                        roles=roles,
                        trainable=split == "train",
                    )
                )
    return parsed


SOURCE = Source(
    name=NAME,
    title="CARGO (synthetic; aerial Cam1-5, ground Cam6-13), no attributes",
    layout="""[ROOT/][CARGO/]
    train/Cam2/Cam2_day_2519_320.jpg     camera, day|night, pid, index
    query/Cam1 ... Cam13/                protocols all, a2a, g2g (by view), a2g (match by view)
    gallery/Cam1 ... Cam13/""",
    splits=FOLDERS,
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
)

"""An unlabeled distractor gallery added to an image source (Market-1501's 500k set, or
any folder of JPEG crops), as ``convert --distractors DIR`` writes it.

Distractors form a split of their own, ``distractors``: pid -1 (no query has it, so never
a true match), camera -1 (no query's camera, so never junk), the source's one view, no
attributes. Each protocol P of the source gets a twin ``P-distractors``: the same
queries, the same gallery plus every distractor; P itself is unchanged, so the standard
and the distractor numbers come from one converted dataset. The folder is walked in
sorted order, every sub-folder included; file names carry no label and are never parsed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .errors import bad_input
from .shard_format import PROTOCOL as PROTOCOL_NAME
from .sources import Parsed, Protocol, Record

__all__ = ["DISTRACTOR_CAMERA", "DISTRACTOR_PID", "SPLIT", "add_distractors", "twin_name"]

SPLIT = "distractors"
DISTRACTOR_PID = -1
DISTRACTOR_CAMERA = -1
SUFFIXES = (".jpg", ".jpeg")
TWIN = "-distractors"


def twin_name(protocol: str) -> str:
    return f"{protocol}{TWIN}"


def _crops(folder: Path, ignored: Counter) -> list[str]:
    """Posix paths (relative to ``folder``) of its JPEG files, sorted; a link is refused
    (it could lead out of the folder), anything that is not a JPEG is counted, not read."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if (Path(parent) / d).is_symlink()]:
            path = Path(parent) / name
            if path.is_symlink():
                raise bad_input(path, "is a symbolic link: distractors must be plain files inside the folder")
            if path.suffix.lower() in SUFFIXES:
                found.append(path.relative_to(folder).as_posix())
            else:
                ignored[f"not a JPEG in {SPLIT}/"] += 1
    return sorted(found)


def add_distractors(
    parsed: Parsed, protocols: tuple[Protocol, ...], folder: Path, views: set[str]
) -> tuple[Parsed, tuple[Protocol, ...]]:
    """``parsed`` with the distractor records and every record's role in the twin protocols."""
    folder = Path(folder)
    if not folder.is_dir():
        raise bad_input(folder, "is not a folder (--distractors takes a folder of JPEG crops)")
    if len(views) != 1:
        raise bad_input(folder, f"distractors need the source's one view; it has {sorted(views)}")
    view = next(iter(views))
    crops = _crops(folder, parsed.ignored)
    if not crops:
        raise bad_input(folder, "holds no .jpg or .jpeg file", "point --distractors at the folder of crops")
    twins = tuple(
        Protocol(
            twin_name(p.name),
            f"{p.description}; plus {len(crops)} distractors",
            p.match,
            p.query_views,
            p.gallery_views,
            p.query_in_gallery,
        )
        for p in protocols
    )
    for twin in twins:
        if not PROTOCOL_NAME.match(twin.name):
            raise bad_input(folder, f"protocol {twin.name!r} would break the protocol-name rule (32 characters)")
    records = [
        r._replace(roles=r.roles + tuple((twin_name(name), role) for name, role in r.roles)) for r in parsed.records
    ]
    gallery_roles = tuple((p.name, "gallery") for p in twins)
    records += [
        Record(SPLIT, path, "distractor", DISTRACTOR_PID, DISTRACTOR_CAMERA, view, roles=gallery_roles)
        for path in crops
    ]
    out = Parsed(parsed.base, parsed.variant, records, parsed.dropped, parsed.ignored)
    return out, protocols + twins

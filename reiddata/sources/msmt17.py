"""MSMT17 (Wei et al. 2018), V1 and V2 (faces blurred), split by its list files.

The split comes only from ``list_{train,val,query,gallery}.txt`` (torchreid
``msmt17.py``). Train labels 0..1040 and test labels 0..3059 overlap but are
different people, so the canonical pid is namespaced: ``pid_raw`` is
``train/0042`` or ``test/0042`` and test pids are offset by ``TEST_PID_OFFSET``.
``val`` is its own split of the train identities (it gets their train labels, so
train + val can be combined); the standard protocol trains on ``train`` only.
Real V1 lists: train 30,248 / 1,041 ids; val 2,373; query 11,659 / 3,060; gallery
82,161 / 3,060.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import bad_input
from .base import Parsed, Protocol, Record, Source, check_camera, match_name

NAME = "msmt17"
LISTS = (("train", "train"), ("val", "train"), ("query", "test"), ("gallery", "test"))  # split, folder side
# V1: train/ test/; V2: mask_train_v2/ mask_test_v2/ (some copies write _V2).
FOLDERS = {"V1": {"train": "train", "test": "test"}, "V2": {"train": "mask_train_v2", "test": "mask_test_v2"}}
NESTED = ("MSMT17_V1", "MSMT17_V2", "MSMT17")
# Matches all 126,441 real V1 lines: pid folder / pid, image index, camera, date+slot,
# frame, detection index (can be 2 digits), optional `_ex` (a second crop: keep).
PATTERN = re.compile(r"^(\d{4})/(\d{4})_(\d{3})_(\d{2})_(\d{4})(morning|noon|afternoon)_(\d{4})_(\d+)(_ex)?\.jpg$")
SHOWN = "0000/0000_045_12_0303morning_0006_2.jpg"
CAMERA_VIEWS = {c: "ground" for c in range(1, 16)}
TEST_PID_OFFSET = 10_000  # test pid = 10000 + label; train pid = label
PROTOCOLS = (Protocol("standard", "list_query vs list_gallery; same pid and camera not counted"),)


def _folder(base: Path, name: str) -> Path | None:
    """``base/name`` matched case-insensitively (``mask_train_v2`` vs ``mask_train_V2``)."""
    for child in sorted(base.iterdir()):
        if child.is_dir() and child.name.lower() == name:
            return child
    return None


def _locate(root: Path) -> tuple[Path, str, dict[str, Path]]:
    if not root.is_dir():
        raise bad_input(root, "is not a folder (expected an msmt17 tree)")
    for base in (root, *(root / n for n in NESTED)):
        if not (base / "list_train.txt").is_file():
            continue
        for variant, names in FOLDERS.items():
            found = {side: _folder(base, name) for side, name in names.items()}
            if all(found.values()):
                return base, variant, found  # type: ignore[return-value]
    raise bad_input(
        root,
        "is not an msmt17 tree: no folder holding list_train.txt with train/ + test/ (V1) "
        "or mask_train_v2/ + mask_test_v2/ (V2)",
        "point at MSMT17_V1/ or MSMT17_V2/ (run `reiddata sources` for the layout)",
    )


def _read_list(path: Path) -> list[tuple[int, str, int]]:
    """(line number, relative path, label) of a list file; blank lines skipped."""
    if not path.is_file():
        raise bad_input(path, "list file missing: MSMT17 splits come only from its four list files")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[1].isdigit():
            raise bad_input(f"{path}:{number}", f"line {line!r} is not 'RELATIVE/PATH.jpg LABEL'")
        out.append((number, parts[0], int(parts[1])))
    return out


def parse(root: Path) -> Parsed:
    base, variant, folders = _locate(root)
    parsed = Parsed(base, f"MSMT17_{variant}", [])
    seen: dict[str, str] = {}
    names = {side: folder.name for side, folder in folders.items()}
    for split, side in LISTS:
        list_path = base / f"list_{split}.txt"
        records = []
        roles = ((PROTOCOLS[0].name, split),) if side == "test" else ()
        offset = TEST_PID_OFFSET if side == "test" else 0
        for number, rel, label in _read_list(list_path):  # 126,441 lines in V1: kept lean
            m = PATTERN.match(rel)
            if m is None:
                match_name(PATTERN, rel, source=NAME, shown=SHOWN, where=f"{list_path}:{number} ({rel})")  # raises
            folder, pid, _, camera = m.group(1, 2, 3, 4)
            if int(folder) != label or folder != pid:
                raise bad_input(f"{list_path}:{number}", f"label {label} disagrees with the pid folder of {rel}")
            path = f"{names[side]}/{rel}"
            if path in seen:
                raise bad_input(f"{list_path}:{number}", f"{rel} is listed again (first in list_{seen[path]}.txt)")
            seen[path] = split
            camid = int(camera)
            view = CAMERA_VIEWS.get(camid) or check_camera(camid, CAMERA_VIEWS, f"{list_path}:{number}", source=NAME)
            records.append(
                Record(
                    split=split,
                    path=path,
                    pid_raw=f"{side}/{folder}",
                    pid=label + offset,
                    camid=camid,
                    view=view,
                    roles=roles,
                    trainable=side == "train",
                )
            )
        parsed.records.extend(sorted(records, key=lambda r: r.path))
    _check_val_ids(parsed.records, base)
    return parsed


def _check_val_ids(records: list[Record], base: Path) -> None:
    """val must hold train identities only: it shares their labels."""
    counts = Counter((r.split, r.pid) for r in records if r.split in ("train", "val"))
    train = {pid for split, pid in counts if split == "train"}
    stray = sorted(pid for split, pid in counts if split == "val" and pid not in train)
    if stray:
        raise bad_input(base / "list_val.txt", f"val lists identities absent from list_train.txt: {stray[:5]}")


SOURCE = Source(
    name=NAME,
    title="MSMT17 V1/V2 (15 cameras), split by its list files",
    layout="""[ROOT/]MSMT17_V1/                           (V2: mask_train_v2/, mask_test_v2/)
    train/0000/0000_045_12_0303morning_0006_2.jpg   images of list_train.txt and list_val.txt
    test/0000/...                                   images of list_query.txt and list_gallery.txt
    list_train.txt list_val.txt list_query.txt list_gallery.txt   'PID/NAME.jpg LABEL' per line""",
    splits=("train", "val", "query", "gallery"),
    camera_views=CAMERA_VIEWS,
    protocols=PROTOCOLS,
    parse=parse,
)

"""The MARS video format (Zheng et al. 2016), shared by MARS and G2A-VReID v1/v2.

```
info/train_name.txt  info/test_name.txt     one frame file name per line, tracklet order
info/tracks_train_info.mat ('track_train_info')  rows [start, end, pid, camid], 1-based, inclusive
info/tracks_test_info.mat  ('track_test_info')
info/query_IDX.mat ('query_IDX')             1-based rows of the test table = queries
bbox_train/<pid folder>/<name>   bbox_test/<pid folder>/<name>
```

A tracklet is a contiguous block of the name list whose names agree on the pid
folder (``name[:4]``; 5 characters in G2A-VReID.v2) and the camera character after
it (as the public loaders assert). Rows with pid -1 are junk: dropped and counted.
The gallery is every test row not in ``query_IDX``: queries are not added to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import bad_input, integer_values
from .base import Parsed, Protocol, Record, check_camera

__all__ = ["REQUIRED", "NameRule", "Tracklet", "parse_base", "read_query_rows", "read_tracklets"]

JUNK = -1
SIDES = {  # side -> (name list, track table file, its variable, frame folder)
    "train": ("train_name.txt", "tracks_train_info.mat", "track_train_info", "bbox_train"),
    "test": ("test_name.txt", "tracks_test_info.mat", "track_test_info", "bbox_test"),
}
REQUIRED = ("info", "bbox_train", "bbox_test")


@dataclass(frozen=True)
class NameRule:
    """How a frame name carries its pid folder (group 1) and camera (group 2)."""

    pattern: re.Pattern[str]
    shown: str
    pid_chars: int  # the pid folder is name[:pid_chars]


@dataclass(frozen=True)
class Tracklet:
    row: int  # 1-based row of the track table
    pid: int
    folder: str  # the pid folder of its frames
    camid: int
    view: str
    frames: tuple[str, ...]  # relative paths, in order


def _load_mat(path: Path, variable: str) -> np.ndarray:
    if not path.is_file():
        raise bad_input(path, "file missing: the MARS format needs it", "restore info/ from the dataset download")
    import scipy.io  # on use: `reiddata stats` and the readers never load it

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for non-MATLAB input
        raise bad_input(path, f"not a readable MATLAB v5 file ({exc})") from exc
    if variable not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise bad_input(path, f"no variable {variable!r} (found {found})")
    return np.asarray(mat[variable])


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise bad_input(path, "file missing: the MARS format needs it", "restore info/ from the dataset download")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_query_rows(info: Path, filename: str, variable: str, rows: int) -> list[int]:
    """0-based test-table rows of a query list (``query_IDX``), checked against the table."""
    path = info / filename
    values = _load_mat(path, variable).ravel()
    if values.size == 0:
        raise bad_input(path, f"{variable} is not a list of row numbers")
    out = [int(v) - 1 for v in integer_values(path, variable, values)]
    bad = [v + 1 for v in out if not 0 <= v < rows]
    if bad:
        raise bad_input(path, f"{variable} names rows {bad[:5]} outside the test table's 1..{rows}")
    if len(set(out)) != len(out):
        raise bad_input(path, f"{variable} lists a test row twice")
    return out


def _frame_files(folder: Path) -> dict[str, set[str]]:
    """pid folder -> names of its files (one listdir per folder, not one stat per frame)."""
    return {d.name: set(os.listdir(d)) for d in sorted(folder.iterdir()) if d.is_dir()}


def read_tracklets(
    base: Path,
    side: str,
    *,
    rule: NameRule,
    source: str,
    camera_views: Mapping[int, str],
    parsed: Parsed,
) -> tuple[list[Tracklet], int]:
    """The tracklets of one side (train/test) and its table's row count; junk dropped and counted."""
    names_file, table_file, variable, home = SIDES[side]
    info = base / "info"
    names = _read_names(info / names_file)
    table = _load_mat(info / table_file, variable)
    if table.ndim != 2 or table.shape[1] != 4:
        raise bad_input(
            info / table_file, f"{variable} has shape {table.shape}; expected rows [start, end, pid, camid]"
        )
    files = _frame_files(base / home)
    used: set[tuple[str, str]] = set()
    out = []
    rows = integer_values(info / table_file, variable, table).tolist()
    for row, (start, end, pid, camid) in enumerate(rows, start=1):
        where = f"{info / table_file} row {row} (frames {start}-{end} of {names_file})"
        if not 1 <= start <= end <= len(names):
            raise bad_input(where, f"frame range outside 1..{len(names)} or reversed")
        frames = names[start - 1 : end]
        if pid == JUNK:
            parsed.dropped[f"junk pid -1 tracklets in {table_file}"] += 1
            parsed.dropped[f"junk pid -1 frames in {table_file}"] += len(frames)
            used.update((frame[: rule.pid_chars], frame) for frame in frames)
            continue
        view = check_camera(camid, camera_views, where, source=source)
        folder = _check_frames(frames, rule, source=source, where=where, pid=pid, camid=camid)
        for frame in frames:
            if frame not in files.get(folder, ()):
                raise bad_input(f"{base / home / folder / frame}", f"frame of the tracklet at {where} is missing")
            used.add((folder, frame))
        rel = tuple(f"{home}/{folder}/{frame}" for frame in frames)
        out.append(Tracklet(row, pid, folder, camid, view, rel))
    unused = sum(len(names) for names in files.values()) - len(used)
    if unused:
        parsed.ignored[f"files in {home}/ in no tracklet"] += unused
    return out, len(table)


def _check_frames(frames: list[str], rule: NameRule, *, source: str, where: str, pid: int, camid: int) -> str:
    """The tracklet's pid folder, after checking every name against the rule and the row."""
    parts = set()
    for frame in frames:
        m = rule.pattern.match(frame)
        if m is None:
            raise bad_input(
                where,
                f"frame {frame} does not follow the {source} name rule {rule.shown} (regex {rule.pattern.pattern})",
                "the MARS format needs the pid folder and camera at the start of every frame name",
            )
        parts.add((m.group(1), m.group(2)))
    if len(parts) > 1:
        shown = ", ".join(f"{p}/C{c}" for p, c in sorted(parts))
        raise bad_input(where, f"a tracklet's frames disagree on pid folder or camera ({shown})")
    folder, camera = parts.pop()
    if int(folder) != pid or int(camera) != camid:
        raise bad_input(where, f"row says pid {pid} camera {camid}, its frames say {folder} C{camera}")
    return folder


def parse_base(
    base: Path,
    *,
    source: str,
    variant: str,
    rule: NameRule,
    camera_views: Mapping[int, str],
    protocols: Sequence[Protocol],
    query_lists: Mapping[str, tuple[str, str]],
) -> Parsed:
    """Tracklet records of a MARS-format tree: train, then test split by the first
    protocol's query list; every protocol's roles from its own list (``query_lists``:
    protocol -> (file in info/, variable)). Roles outside a protocol's views are errors."""
    parsed = Parsed(base, variant, [], protocols=tuple(protocols))
    kw = {"rule": rule, "source": source, "camera_views": camera_views, "parsed": parsed}
    train, _ = read_tracklets(base, "train", **kw)
    test, rows = read_tracklets(base, "test", **kw)
    queries = {
        p.name: {r + 1 for r in read_query_rows(base / "info", *query_lists[p.name], rows=rows)} for p in protocols
    }
    for t in train:
        parsed.records.append(_record(t, "train", ()))
    for t in test:
        roles = tuple((p.name, "query" if t.row in queries[p.name] else "gallery") for p in protocols)
        for protocol, (_, role) in zip(protocols, roles):
            if not protocol.admits(role, t.view):
                where = f"{base / 'info' / SIDES['test'][1]} row {t.row}"
                raise bad_input(where, f"a {t.view} tracklet as {protocol.name} {role}; {protocol.description}")
        parsed.records.append(_record(t, roles[0][1], roles))
    return parsed


def _record(t: Tracklet, split: str, roles: tuple[tuple[str, str], ...]) -> Record:
    return Record(
        split=split,
        path=t.frames[0],
        pid_raw=t.folder,
        pid=t.pid,
        camid=t.camid,
        view=t.view,
        roles=roles,
        trainable=split == "train",
        frames=t.frames,
    )

"""Synthetic MARS and G2A-VReID trees: tracklets of the synthetic people in the MARS format.

Each frame is a new render of the person, so the crop moves (position, pose jitter)
and its scale drifts along the tracklet; G2A's UAV tracklets are seen from above,
small and blurred, its ground tracklets frontal. Lengths vary from 5 frames (shorter
than the usual T = 8) to over 100. Written as the real ``info/*.txt``, ``info/*.mat``
(MATLAB v5, the real variable names) and ``bbox_*/`` folders, with a junk tracklet
(pid -1) in the test table and, for MARS, a distractor tracklet (pid 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..attributes import fix_mat_header
from .common import camera_tints, save, seeded, world
from .people import Person, jpeg_bytes, render, render_clutter

__all__ = ["write_g2a_vreid", "write_mars"]


@dataclass(frozen=True)
class Track:
    pid: int  # -1 junk, 0 distractor
    camid: int
    view: str
    length: int
    person: Person | None
    role: str  # train, query, gallery, a2g (a v2 aerial query, in the gallery of g2a)


def _lengths(rng: np.random.Generator, count: int) -> list[int]:
    """Tracklet lengths: the first two are 5 and 104 frames, the others 8 to 47."""
    fixed = [5, 104]
    return [fixed[i] if i < len(fixed) else int(rng.integers(8, 48)) for i in range(count)]


def _frame_size(view: str, base: tuple[int, int] | None, t: int, n: int, phase: float) -> tuple[int, int]:
    """The crop size of frame ``t``: fixed (MARS resizes) or drifting with the distance."""
    if base is not None:
        return base
    scale = 1.0 + 0.25 * math.sin(2 * math.pi * t / max(n, 2) + phase)
    height = (56 if view == "aerial" else 112) * scale
    width = height * (0.62 if view == "aerial" else 0.42)
    return max(12, int(width)), max(24, int(height))


def _frames(track: Track, rng: np.random.Generator, tint, size: tuple[int, int] | None) -> Iterator[bytes]:
    phase = float(rng.uniform(0, 2 * math.pi))
    for t in range(track.length):
        frame_size = _frame_size(track.view, size, t, track.length, phase)
        if track.person is None:
            image = render_clutter(size=frame_size, rng=rng, tint=tint)
        else:
            image = render(track.person, view=track.view, size=frame_size, rng=rng, tint=tint)
        yield jpeg_bytes(image)


def _save_mat(path: Path, variable: str, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import scipy.io

    scipy.io.savemat(str(path), {variable: array}, format="5", do_compression=False)
    fix_mat_header(path)


def _write(
    out: Path,
    tracks: dict[str, list[Track]],
    *,
    seed: int,
    pid_chars: int,
    cameras: int,
    size: tuple[int, int] | None,
    query_lists: dict[str, str],
) -> None:
    """Frames, name lists and tables of ``tracks`` (train/test); query lists by role."""
    tints = camera_tints(seed, cameras)
    for side, home in (("train", "bbox_train"), ("test", "bbox_test")):
        names: list[str] = []
        table = []
        counters: dict[tuple[int, int], int] = {}
        for n, track in enumerate(tracks[side]):
            folder = "-1".rjust(pid_chars, "0") if track.pid == -1 else f"{track.pid:0{pid_chars}d}"
            number = counters[(track.pid, track.camid)] = counters.get((track.pid, track.camid), 0) + 1
            rng = seeded(seed, 41, side == "test", n)
            start = len(names) + 1
            for f, data in enumerate(_frames(track, rng, tints[track.camid], size), start=1):
                name = f"{folder}C{track.camid}T{number:04d}F{f:03d}.jpg"
                save(out / home / folder / name, data)
                names.append(name)
            table.append([start, len(names), track.pid, track.camid])
        (out / "info" / f"{side}_name.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "info" / f"{side}_name.txt").write_text("".join(f"{name}\n" for name in names))
        _save_mat(out / "info" / f"tracks_{side}_info.mat", f"track_{side}_info", np.asarray(table, dtype=np.float64))
    for role, variable in query_lists.items():
        rows = [i + 1 for i, t in enumerate(tracks["test"]) if t.role == role]
        _save_mat(out / "info" / f"{variable}.mat", variable, np.asarray([rows], dtype=np.float64))


def write_mars(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """MARS: 2-3 tracklets per identity over 6 ground cameras, 64x128 frames."""
    people, pids, is_test = world(identities, seed, None, np.arange(1, 1502))
    rng = seeded(seed, 43)
    tracks: dict[str, list[Track]] = {"train": [], "test": []}
    lengths = iter(_lengths(rng, 3 * identities))
    for person, pid, test in zip(people, pids, is_test):
        cams = sorted(int(c) + 1 for c in rng.choice(6, size=int(rng.integers(2, 4)), replace=False))
        for k, cam in enumerate(cams):
            role = ("query" if k == 0 else "gallery") if test else "train"
            tracks["test" if test else "train"].append(Track(pid, cam, "ground", next(lengths), person, role))
    tracks["test"].append(Track(0, 1, "ground", 6, None, "gallery"))  # a distractor tracklet
    tracks["test"].append(Track(-1, 2, "ground", 4, None, "gallery"))  # junk
    for side in tracks:
        tracks[side].sort(key=lambda t: (t.pid if t.pid > 0 else 10**6 - t.pid, t.camid))
    _write(out, tracks, seed=seed, pid_chars=4, cameras=6, size=(64, 128), query_lists={"query": "query_IDX"})


def write_g2a_vreid(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """G2A-VReID: every identity has one ground (camera 1) and one UAV (camera 2)
    tracklet; test ground tracklets are the queries, v2 adds the UAV ones as a2g queries."""
    v2 = (variant or "v1").lower() == "v2"
    people, pids, is_test = world(identities, seed, None, np.arange(1, 3000))
    rng = seeded(seed, 47)
    lengths = iter(_lengths(rng, 2 * identities))
    tracks: dict[str, list[Track]] = {"train": [], "test": []}
    for person, pid, test in zip(people, pids, is_test):
        side = "test" if test else "train"
        for cam, view in ((1, "ground"), (2, "aerial")):
            role = "train" if not test else ("query" if cam == 1 else ("a2g" if v2 else "gallery"))
            tracks[side].append(Track(pid, cam, view, next(lengths), person, role))
    tracks["test"].append(Track(-1, 2, "aerial", 4, None, "gallery"))  # junk
    lists = {"query": "query_IDX", "a2g": "query_IDX_A2G"} if v2 else {"query": "query_IDX"}
    _write(out, tracks, seed=seed, pid_chars=5 if v2 else 4, cameras=2, size=None, query_lists=lists)

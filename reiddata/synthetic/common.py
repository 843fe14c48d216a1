"""Helpers every synthetic layout shares: seeded randomness, people, shots, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..attributes import AttributeSchema
from .people import make_people

__all__ = ["camera_tints", "image_size", "save", "seeded", "shots", "split_test", "world"]


def seeded(seed: int, *words: int) -> np.random.Generator:
    return np.random.default_rng([seed, *words])


def camera_tints(seed: int, cameras: int) -> dict[int, tuple[int, int, int]]:
    rng = seeded(seed, 31)
    return {c: tuple(int(v) for v in rng.integers(60, 200, size=3)) for c in range(1, cameras + 1)}  # type: ignore[misc]


def save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def shots(rng: np.random.Generator, cameras: int, *, min_cams: int = 2, max_cams: int = 4) -> list[int]:
    """Cameras of one identity's images: 2-4 cameras, 2-3 images each, camera order."""
    cams = sorted(
        int(c) + 1 for c in rng.choice(cameras, size=int(rng.integers(min_cams, max_cams + 1)), replace=False)
    )
    return [c for c in cams for _ in range(int(rng.integers(2, 4)))]


def image_size(rng: np.random.Generator, fixed: tuple[int, int] | None) -> tuple[int, int]:
    if fixed:
        return fixed
    height = int(rng.integers(96, 193))
    return int(height * rng.uniform(0.36, 0.5)), height


def world(identities: int, seed: int, schema: AttributeSchema | None, pid_pool: np.ndarray):
    """People, their pids (sorted within train and test) and which are test identities."""
    colours = {}
    if schema is not None:
        for name in ("upcolor", "downcolor"):
            a = schema.attribute(name)
            colours[name] = a.values[: len(a.fields)]
    people = make_people(
        identities,
        seed,
        up_colours=colours.get("upcolor", ("black", "white", "red", "gray", "blue", "green")),
        down_colours=colours.get("downcolor", ("black", "white", "gray", "blue", "brown")),
    )
    rng = seeded(seed, 11)
    pids = sorted(int(p) for p in rng.choice(pid_pool, size=identities, replace=False))
    is_test = np.zeros(identities, dtype=bool)
    is_test[rng.permutation(identities)[: identities // 2]] = True
    return people, pids, is_test


def split_test(rng: np.random.Generator, cams: list[int], *, with_query: bool) -> list[str]:
    """query for the first image of up to two cameras, gallery for the rest."""
    roles, queried = [], set()
    for cam in cams:
        if with_query and cam not in queried and len(queried) < 2:
            queried.add(cam)
            roles.append("query")
        else:
            roles.append("gallery")
    return roles

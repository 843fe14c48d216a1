"""Synthetic AG-ReID.v1, AG-ReID.v2 and CARGO trees, in their exact layouts.

The same people are seen from a UAV (small, blurred, from above), from the ground
(frontal, full body) and, in AG-ReID.v2, from a wearable camera (close, tilted, cut
off). AG-ReID identities reuse person numbers P across different times T and
altitudes A, as the real data does, so a loader keying on P alone merges people.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..attributes import NO, YES, write_attribute_file
from ..sources import _agreid_common as agreid
from ..sources import agreid_v2, cargo
from .common import camera_tints, save, seeded, world
from .people import SKIN, Person, jpeg_bytes, render

__all__ = ["write_agreid_v1", "write_agreid_v2", "write_cargo"]

# (min height, max height, min aspect, max aspect) of crops per view: UAV crops are small.
SIZES = {"aerial": (40, 72, 0.55, 0.8), "ground": (96, 160, 0.36, 0.5), "wearable": (128, 192, 0.5, 0.7)}
ETHNIC = dict(zip(SKIN, ("white", "asian", "indian", "black", "black")))


def view_size(rng: np.random.Generator, view: str) -> tuple[int, int]:
    low, high, a0, a1 = SIZES[view]
    height = int(rng.integers(low, high + 1))
    return max(16, int(height * rng.uniform(a0, a1))), height


def qut_labels(person: Person, rng: np.random.Generator) -> dict[str, str]:
    """The 15 QUT attributes an annotator marks for ``person`` (what the renderer draws)."""
    a = person.attrs
    male = a["gender"] == "male"
    hair = {(20, 15, 10): "black", (70, 45, 25): "brown", (150, 110, 60): "brown", (185, 185, 180): "gray"}
    if a["clothes"] == "dress":
        lower = "dress"
    else:
        lower = "shorts" if a["lower"] == "short" else ("jeans" if a["downcolor"] == "blue" else "pants")
    return {
        "gender": a["gender"],
        "age": {"young": "young", "teenager": "young", "adult": "middle", "old": "old"}[a["age"]],
        "height": "short" if person.stature < 0.86 else ("medium" if person.stature < 0.94 else "tall"),
        "weight": "thin" if person.build < 0.9 else ("medium" if person.build < 1.1 else "fat"),
        "ethnic": ETHNIC[person.skin],
        "haircolor": "occluded" if a["hat"] == "yes" else hair.get(person.hair_rgb, "unknown"),
        "hairstyle": a["hair"],
        "beard": "on" if male and rng.random() < 0.15 else "off",
        "moustache": "on" if male and rng.random() < 0.15 else "off",
        "glasses": "off" if rng.random() < 0.85 else "unknown",
        "head": "hat" if a["hat"] == "yes" else "unknown",
        "upper": "tshirt" if a["sleeve"] == "short" else ("sweater", "coat", "shirt")[person.index % 3],
        "lower": lower,
        "feet": "boots" if a["boots"] == "yes" else ("classicshoe" if a["shoes"] == "dark" else "sportshoe"),
        "bag": {"none": "nothing", "backpack": "backpack", "bag": "normal", "handbag": "handbag"}[a["carrying"]],
    }


def _identities(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(P+T+A identity, digits) per person. Pairs share P (P0000 included) but differ in
    T or A: different people to the dataset, one person to a P-alone loader."""
    out = []
    for i in range(count):
        p = i // 2
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        t = f"{month:02d}{day:02d}{int(rng.integers(0, 2))}"
        a = int(rng.integers(0, 3))
        if i % 2 == 1:  # the pair's second person: another altitude, or another time
            prev_t, prev_a = out[-1][0][6:11], int(out[-1][0][12])
            t, a = (prev_t, (prev_a + 1) % 3) if i % 4 == 1 else (f"{(int(prev_t[:2]) % 12) + 1:02d}{prev_t[2:]}", a)
        identity = f"P{p:04d}T{t}A{a}"
        out.append((identity, identity[1:5] + identity[6:11] + identity[12]))
    return out


def _qut_file(path: Path, people, ids, is_test, seed: int) -> None:
    """The QUT .mat with the real files' quirks: one identity with no glasses value
    marked (decodes to unknown), one with two bags marked (kept as the first)."""
    parts: dict[str, dict[str, dict[str, str]]] = {"train": {}, "test": {}}
    for person, (_, digits), test in zip(people, ids, is_test):
        parts["test" if test else "train"][digits] = qut_labels(person, seeded(seed, 97, person.index))
    glasses = agreid.SCHEMA.attribute("glasses").fields
    raw = {
        "train": {min(parts["train"]): {f: NO for f in glasses}},
        "test": {min(parts["test"]): {"bagbackpack": YES, "baghandbag": YES}},
    }
    parts["test"][min(parts["test"])]["bag"] = "backpack"
    orders = {"train": list(agreid.SCHEMA.fields), "test": sorted(agreid.SCHEMA.fields)}
    write_attribute_file(path, agreid.SCHEMA, parts, field_orders=orders, raw_codes=raw)


def _frames(rng: np.random.Generator, n: int) -> list[int]:
    """Frame numbers, not zero-padded and of varying width, as in the real names."""
    return sorted(int(f) for f in rng.choice(np.arange(1, 30000), size=n, replace=False))


def write_agreid_v1(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """Flat folders; test images of C0 and C3 split into the a2g and g2a folders."""
    people, _, is_test = world(identities, seed, None, np.arange(identities))
    ids = _identities(identities, seeded(seed, 13))
    tints = camera_tints(seed, 4)
    for person, (identity, _), test in zip(people, ids, is_test):
        rng = seeded(seed, 3, person.index)
        for camid, view in ((0, "aerial"), (3, "ground")):
            n = int(rng.integers(2, 4))
            for k, frame in enumerate(_frames(rng, n)):
                if not test:
                    folder = "bounding_box_train"
                else:  # the first image of each camera is a query, the rest gallery
                    folder = f"query_all_c{camid}" if k == 0 else f"bounding_box_test_all_c{camid}"
                image = render(person, view=view, size=view_size(rng, view), rng=rng, tint=tints[camid + 1])
                save(out / folder / f"{identity}C{camid}F{frame}.jpg", jpeg_bytes(image))
    _qut_file(out / agreid.SCHEMA_V1.filenames[0], people, ids, is_test, seed)


def write_agreid_v2(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """Identity folders; exp lists and .mat beside them (``flat``) or one folder up (``nested``)."""
    images = out / "AG-ReID.v2" if (variant or "flat").lower() == "nested" else out
    people, _, is_test = world(identities, seed, None, np.arange(identities))
    ids = _identities(identities, seeded(seed, 13))
    tints = camera_tints(seed, 4)
    views = {0: "aerial", 2: "wearable", 3: "ground"}
    # per test identity and camera: its query and gallery entries ("query/ID/NAME.jpg")
    entries: dict[str, dict[int, dict[str, list[str]]]] = {}
    for person, (identity, _), test in zip(people, ids, is_test):
        rng = seeded(seed, 3, person.index)
        ground = [[2], [3], [2, 3]][int(rng.integers(3))]  # every identity is also seen from the UAV
        by_camera: dict[int, dict[str, list[str]]] = defaultdict(lambda: {"query": [], "gallery": []})
        for camid in (0, *ground):
            n = int(rng.integers(2, 4))
            for k, frame in enumerate(_frames(rng, n)):
                role = "train_all" if not test else ("query" if k == 0 else "gallery")
                rel = f"{role}/{identity}/{identity}C{camid}F{frame}.jpg"
                image = render(
                    person, view=views[camid], size=view_size(rng, views[camid]), rng=rng, tint=tints[camid + 1]
                )
                save(images / rel, jpeg_bytes(image))
                if test:
                    by_camera[camid][role].append(rel)
        if test:
            entries[identity] = by_camera
    lists = {
        "a2c": (0, 3),
        "a2w": (0, 2),
        "c2a": (3, 0),
        "w2a": (2, 0),
    }
    for protocol, (query_cam, gallery_cam) in lists.items():
        lines = []
        for by_camera in entries.values():  # queries of identities the gallery camera also saw
            if by_camera.get(gallery_cam, {}).get("gallery"):
                lines += by_camera.get(query_cam, {}).get("query", [])
        for by_camera in entries.values():
            lines += by_camera.get(gallery_cam, {}).get("gallery", [])
        (out / agreid_v2.LISTS[protocol]).write_text("".join(f"{line}\n" for line in lines))
    _qut_file(out / agreid.SCHEMA_V2.filenames[0], people, ids, is_test, seed)


def write_cargo(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """One folder per camera in every split (all 13, some empty, as downloaded); each
    test identity has one query, aerial and ground in turn, and the rest in the gallery."""
    base = out / "CARGO"
    people, pids, is_test = world(identities, seed, None, np.arange(1, 5001))
    tints = camera_tints(seed, 13)
    for split in cargo.FOLDERS:
        for camid in cargo.CAMERA_VIEWS:
            (base / split / f"Cam{camid}").mkdir(parents=True, exist_ok=True)
    counter, queries = 0, 0
    for person, pid, test in zip(people, pids, is_test):
        rng = seeded(seed, 3, person.index)
        aerial = rng.choice(np.arange(1, 6), size=int(rng.integers(1, 3)), replace=False)
        ground = rng.choice(np.arange(6, 14), size=int(rng.integers(1, 3)), replace=False)
        cams = sorted(int(c) for c in (*aerial, *ground))
        query_view = ("aerial", "ground")[queries % 2]
        queried = False
        for camid in cams:
            view = cargo.CAMERA_VIEWS[camid]
            for _ in range(int(rng.integers(2, 4))):
                counter += 1
                split = "train"
                if test:
                    split = "query" if not queried and view == query_view else "gallery"
                    queried = queried or split == "query"
                period = ("day", "night")[int(rng.random() < 0.3)]
                name = f"Cam{camid}_{period}_{pid}_{counter}.jpg"
                image = render(person, view=view, size=view_size(rng, view), rng=rng, tint=tints[camid])
                save(base / split / f"Cam{camid}" / name, jpeg_bytes(image))
        queries += int(test)

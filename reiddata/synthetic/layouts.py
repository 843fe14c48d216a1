"""Synthetic trees in each source's exact on-disk layout, attribute files included.

Each writer lays out the same kind of world: identities split between train and test,
each seen by several cameras, test identities split into query and gallery so that
every query has a gallery match from another camera. Counts are known from the
arguments, which is what the tests check against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..attributes import AttributeSchema, write_attribute_file
from ..sources import dukemtmc, market1501
from .aerial_ground import write_agreid_v1, write_agreid_v2, write_cargo
from .common import camera_tints, image_size, save, seeded, shots, split_test, world
from .people import Person, jpeg_bytes, make_people, render, render_clutter
from .tracklets import write_g2a_vreid, write_mars

__all__ = ["LAYOUTS", "Layout"]

# Visual attribute of a Person behind each schema attribute whose name differs.
ALIASES = {"up": "sleeve", "top": "sleeve", "down": "lower"}


@dataclass(frozen=True)
class Layout:
    write: Callable[[Path, int, int, str | None], None]  # (out, identities, seed, variant)
    variants: tuple[str, ...] = ()
    min_identities: int = 4


def _labels(person: Person, schema: AttributeSchema, rng: np.random.Generator) -> dict[str, str]:
    """What an annotator of ``schema`` marks for ``person``, with the real files' quirks.

    About 5% of identities get no upper colour marked (as in the real files), and a
    two-coloured lower garment gets several lower colours marked (``multi``).
    """
    out = {}
    for attribute in schema.attributes:
        name = attribute.name
        if name in ("backpack", "bag", "handbag"):
            value = "yes" if person.attrs["carrying"] == name else "no"
        else:
            value = person.attrs[ALIASES.get(name, name)]
        if name == "upcolor" and rng.random() < 0.05:
            value = "none"
        if name == "downcolor" and len(person.down_rgb) > 1:
            value = "multi"
        out[name] = value
    return out


def _attribute_tables(people, pids, is_test, schema, seed) -> dict[str, dict[str, dict[str, str]]]:
    parts: dict[str, dict[str, dict[str, str]]] = {"train": {}, "test": {}}
    for person, pid, test in zip(people, pids, is_test):
        parts["test" if test else "train"][f"{pid:04d}"] = _labels(person, schema, seeded(seed, 97, person.index))
    return parts


def _flat_folders(
    out: Path,
    *,
    identities: int,
    seed: int,
    schema: AttributeSchema,
    folders: Mapping[str, str],
    cameras: int,
    name: Callable[[int, int, int], str],
    size: tuple[int, int] | None,
    junk: Callable[[int, int], str] | None = None,
    distractor: Callable[[int, int], str] | None = None,
    gallery_only: float = 0.0,
) -> None:
    """Market/Duke: one flat folder per split; ``name(pid, cam, n)`` builds file names."""
    people, pids, is_test = world(identities, seed, schema, np.arange(1, 1502))
    tints = camera_tints(seed, cameras)
    counter = 0
    for person, pid, test in zip(people, pids, is_test):
        rng = seeded(seed, 3, person.index)
        cams = shots(rng, cameras)
        roles = split_test(rng, cams, with_query=rng.random() >= gallery_only) if test else ["train"] * len(cams)
        for cam, role in zip(cams, roles):
            counter += 1
            image = render(person, view="ground", size=image_size(rng, size), rng=rng, tint=tints[cam])
            save(out / folders[role] / name(pid, cam, counter), jpeg_bytes(image))
    rng = seeded(seed, 5)
    for maker in (junk, distractor):
        for i in range(identities // 4 if maker else 0):
            cam = int(rng.integers(1, cameras + 1))
            image = render_clutter(size=image_size(rng, size), rng=rng, tint=tints[cam])
            save(out / folders["gallery"] / maker(cam, i + 1), jpeg_bytes(image))  # type: ignore[misc]
    tables = _attribute_tables(people, pids, is_test, schema, seed)
    if schema is dukemtmc.SCHEMA:  # the real file has unlabelled `top` (0) for two train ids
        first = min(tables["train"])
        tables["train"][first] = dict(tables["train"][first], top="unknown")
    # The real files order fields differently in their two parts; so do we.
    orders = {"train": sorted(schema.fields), "test": list(schema.fields)}
    write_attribute_file(out.parent / schema.filenames[0], schema, tables, field_orders=orders)


def write_market1501(out: Path, identities: int, seed: int, variant: str | None) -> None:
    base = out / "Market-1501-v15.09.15"
    _flat_folders(
        base,
        identities=identities,
        seed=seed,
        schema=market1501.SCHEMA,
        folders={"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},
        cameras=6,
        name=lambda pid, cam, n: f"{pid:04d}_c{cam}s{1 + n % 6}_{n * 25:06d}_{1 + n % 3:02d}.jpg",
        size=(64, 128),
        junk=lambda cam, n: f"-1_c{cam}s1_{n * 40:06d}_00.jpg",
        distractor=lambda cam, n: f"0000_c{cam}s2_{n * 40:06d}_00.jpg",
    )
    (base / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00" * 16)  # as in real downloads
    (base / "readme.txt").write_text("Synthetic Market-1501 written by `reiddata synth`.\n")


def write_dukemtmc(out: Path, identities: int, seed: int, variant: str | None) -> None:
    _flat_folders(
        out / "DukeMTMC-reID",
        identities=identities,
        seed=seed,
        schema=dukemtmc.SCHEMA,
        folders={"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},
        cameras=8,
        name=lambda pid, cam, n: f"{pid:04d}_c{cam}_f{n * 120:07d}.jpg",
        size=None,
        gallery_only=0.3,  # Duke has 408 identities that appear only in the gallery
    )


def _msmt_names(rng: np.random.Generator, pid: int, cams: list[int]) -> Iterator[tuple[int, str]]:
    """(camera, name) per image; some detections get a second ``_ex`` crop, as in the real data."""
    index = 0
    for cam in cams:
        date = ("0113", "0302", "0303")[int(rng.integers(3))]
        slot = ("morning", "noon", "afternoon")[int(rng.integers(3))]
        frame, det = int(rng.integers(1, 9999)), int(rng.integers(0, 12))
        stem = f"{pid:04d}_{{:03d}}_{cam:02d}_{date}{slot}_{frame:04d}_{det}"
        yield cam, stem.format(index) + ".jpg"
        index += 1
        if rng.random() < 0.15:
            yield cam, stem.format(index) + "_ex.jpg"
            index += 1


def write_msmt17(out: Path, identities: int, seed: int, variant: str | None) -> None:
    """MSMT17: train and test labels both start at 0 (different people, same numbers)."""
    v2 = (variant or "v1").lower() == "v2"
    base = out / ("MSMT17_V2" if v2 else "MSMT17_V1")
    folders = {"train": "mask_train_v2" if v2 else "train", "test": "mask_test_v2" if v2 else "test"}
    people, _, is_test = world(identities, seed, None, np.arange(identities))
    tints = camera_tints(seed, 15)
    lists: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}
    labels = {"train": 0, "test": 0}
    for person, test in zip(people, is_test):
        side = "test" if test else "train"
        label = labels[side]
        labels[side] += 1
        rng = seeded(seed, 3, person.index)
        names = list(_msmt_names(rng, label, shots(rng, 15)))
        if test:
            roles = split_test(rng, [c for c, _ in names], with_query=True)
        else:  # about one image in ten of an identity goes to val; train keeps the rest
            roles = ["val" if i > 0 and rng.random() < 0.12 else "train" for i in range(len(names))]
        for (cam, name), role in zip(names, roles):
            image = render(person, view="ground", size=image_size(rng, None), rng=rng, tint=tints[cam])
            save(base / folders[side] / f"{label:04d}" / name, jpeg_bytes(image))
            lists[role].append(f"{label:04d}/{name} {label}")
    for split, lines in lists.items():
        (base / f"list_{split}.txt").write_text("".join(line + "\n" for line in lines))


LAYOUTS: dict[str, Layout] = {
    "market1501": Layout(write_market1501),
    "dukemtmc-reid": Layout(write_dukemtmc),
    "msmt17": Layout(write_msmt17, variants=("v1", "v2")),
    "agreid-v1": Layout(write_agreid_v1),
    "agreid-v2": Layout(write_agreid_v2, variants=("flat", "nested")),
    "cargo": Layout(write_cargo),
    "mars": Layout(write_mars),
    "g2a-vreid": Layout(write_g2a_vreid, variants=("v1", "v2")),
}

TRACKLET_SOURCES = ("mars", "g2a-vreid")
COLOURS = ("black", "white", "red", "gray", "blue", "green")


def write_distractors(out: Path, count: int, seed: int) -> None:
    """``count`` unlabeled crops, ``00000001.jpg`` ...: people of another world (a seed no
    dataset uses), one crop each, from random cameras; every fifth a false detection."""
    people = make_people(count, seed + 7919, up_colours=COLOURS, down_colours=COLOURS)
    tints = camera_tints(seed + 7919, 6)
    for n, person in enumerate(people, start=1):
        rng = seeded(seed, 11, n)
        tint = tints[int(rng.integers(1, 7))]
        size = image_size(rng, (64, 128))
        if n % 5 == 0:
            image = render_clutter(size=size, rng=rng, tint=tint)
        else:
            image = render(person, view="ground", size=size, rng=rng, tint=tint)
        save(out / f"{n:08d}.jpg", jpeg_bytes(image))

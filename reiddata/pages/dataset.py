"""``reiddata show``: a dataset as a page to browse, and contact sheets as PNG for papers.

The page (``OUT/index.html``, opens from disk) has the counts per split, camera and
view, the protocols, what conversion dropped, and then one card per identity: its
images (or tracklets, as filmstrips) grouped by view side by side and by camera in
rows, with attributes and SIDs; filters by split, camera, view, attribute value and
identity; ``per_page`` identities per page (20). All of it is built from the shards (thumbnails in
sprite sheets, see ``thumbs``), so a dataset in a bucket shows as well as a local one.

Tracklets show up to ``frames`` frames each: the frames the sparse temporal sampler
takes (``sample_clips``: train samples as epoch 0 of seed 0 draws them, other splits
the fixed test clip), outlined, and evenly spaced others to fill the strip.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ReidDataError
from ..locations import open_dataset
from ..reader import ReidDataset
from ..temporal import sample_clips
from .html import write_page, written_page
from .thumbs import PER_SHEET, SHEET_COLUMNS, TILE, Tile, render_sheets

__all__ = ["CODES", "filmstrip", "show"]

CODES = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # attribute value index -> one character


def filmstrip(num_frames: int, *, key: str, train: bool, mode: str, length: int, frames: int) -> tuple[list, list]:
    """(frame numbers shown, 1 where the sampler takes that frame) for one tracklet."""
    clips = sample_clips(num_frames, mode=mode, length=length, train=train, index=zlib.crc32(key.encode()))
    picked = sorted({f for clip in clips for f in clip})
    shown = set(picked[:frames])
    spare = frames - len(shown)
    # evenly spaced others, first and last among them, so the strip spans the tracklet
    even = [
        f
        for f in dict.fromkeys(np.linspace(0, num_frames - 1, num=min(num_frames, frames)).round().astype(int).tolist())
        if f not in shown
    ]
    if spare > 0 and even:
        take = np.linspace(0, len(even) - 1, num=min(spare, len(even))).round().astype(int)
        shown |= {even[i] for i in take}
    order = sorted(shown)
    return order, [1 if f in picked else 0 for f in order]


def _tables(ds: ReidDataset, split: np.ndarray, camid: np.ndarray, view: np.ndarray) -> list[dict]:
    m = ds.manifest
    cameras = sorted(set(camid.tolist()))
    views = sorted(set(view.tolist()))
    by_camera, by_view = [], []
    for s in ds.splits:
        here = split == s
        by_camera.append([s, *(int(np.sum(here & (camid == c))) for c in cameras), int(here.sum())])
        info = m["splits"][s]
        by_view.append([s, *(info["views"].get(v, 0) for v in views), info["ids"], info["frames"]])
    unit = "tracklets" if ds.kind == "video" else "images"
    tables = [
        {"caption": f"{unit} per split and camera", "header": ["split", *map(str, cameras), "all"], "rows": by_camera},
        {"caption": f"{unit} per split and view", "header": ["split", *views, "ids", "frames"], "rows": by_view},
    ]
    protocols = []
    for name in m["protocol_order"]:
        p = m["protocols"][name]
        protocols.append([name, p["match"], p["query"]["samples"], p["query"]["ids"], p["gallery"]["samples"],
                          p["gallery"]["ids"]])  # fmt: skip
    tables.append({"caption": "protocols", "header": ["protocol", "match", "query", "ids", "gallery", "ids"],
                   "rows": protocols})  # fmt: skip
    counted = [[f"{what}: {reason}", n] for what in ("dropped", "ignored") for reason, n in m.get(what, {}).items()]
    counted += [[f"anomaly: {reason}", n] for reason, n in _flat(m.get("anomalies", {}))]
    if counted:
        tables.append({"caption": "left out or unusual at conversion", "header": ["what", "count"], "rows": counted})
    return tables


def _flat(anomalies: dict, prefix: str = "") -> list[tuple[str, int]]:
    out = []
    for name, value in anomalies.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", value))
    return out


def _attributes(ds: ReidDataset) -> tuple[list[dict], list[str], list, list]:
    """(schema, group names, per sample the value codes or None, per sample the SIDs or None)."""
    schema = ds.manifest.get("attributes")
    if not schema or "attributes" not in ds.index.column_names:
        return [], [], [None] * len(ds.index), [None] * len(ds.index)
    attributes = [{"name": a["name"], "values": list(a["values"])} for a in schema["attributes"]]
    if any(len(a["values"]) > len(CODES) for a in attributes):
        raise ReidDataError(f"{ds.path}: an attribute has more than {len(CODES)} values; the page cannot encode it")
    lookup = [{v: CODES[k] for k, v in enumerate(a["values"])} for a in attributes]
    groups = [g["name"] for g in schema["groups"]]
    codes, sids = [], []
    for values, sid in zip(ds.index.column("attributes").to_pylist(), ds.index.column("sid").to_pylist()):
        codes.append(None if values is None else "".join(lookup[k].get(values[a["name"]], ".") for k, a in
                                                        enumerate(attributes)))  # fmt: skip
        sids.append(None if sid is None else [sid[g] for g in groups])
    return attributes, groups, codes, sids


def _page_data(ds: ReidDataset, *, mode: str, length: int, frames: int) -> tuple[dict, list[Tile]]:
    col = lambda name: ds.index.column(name).to_pylist()  # noqa: E731
    keys, split, pid, camid = col("key"), np.asarray(col("split")), np.asarray(col("pid")), np.asarray(col("camid"))
    view = np.asarray(col("view"))
    views = sorted(set(view.tolist()))
    view_code = np.searchsorted(views, view)
    split_code = np.asarray([ds.splits.index(s) for s in split.tolist()])
    attributes, groups, codes, sids = _attributes(ds)
    samples = {
        "key": keys, "split": split_code.tolist(), "pid": pid.tolist(), "pid_raw": col("pid_raw"),
        "camera": camid.tolist(), "view": view_code.tolist(), "source": col("source"), "attributes": codes,
        "sid": sids,
    }  # fmt: skip
    tiles: list[Tile] = []
    if ds.kind == "video":
        samples.update(tile=[], frames=[], picked=[], num_frames=col("num_frames"))
        for row, (key, n, s) in enumerate(zip(keys, samples["num_frames"], split.tolist())):
            shown, picked = filmstrip(n, key=key, train=s == "train", mode=mode, length=length, frames=frames)
            samples["tile"].append(len(tiles))
            samples["frames"].append(shown)
            samples["picked"].append(picked)
            tiles += [Tile(row, f) for f in shown]
    else:
        samples["tile"] = list(range(len(keys)))  # index order: each sheet reads one stretch of one shard
        tiles = [Tile(row) for row in range(len(keys))]
    order = np.lexsort((np.arange(len(keys)), camid, view_code, pid))
    meta = {
        "source": ds.manifest["source"], "version": ds.version, "kind": ds.kind, "splits": list(ds.splits),
        "cameras": sorted(set(camid.tolist())), "views": views, "attributes": attributes, "groups": groups,
        "tables": _tables(ds, split, camid, view),
        "sampler": f"Outlined frames: the {length} the sparse sampler ({mode}) takes; train tracklets as epoch 0 "
        "of seed 0 draws them, the others the fixed test clip. Numbers: the frame in its tracklet.",
    }  # fmt: skip
    return {"meta": meta, "samples": samples, "order": order.tolist()}, tiles


def show(
    location: str | Path,
    out: str | Path,
    *,
    png: bool = False,
    ids: list[int] | None = None,
    workers: int = 1,
    clip_mode: str = "tsn",
    clip_length: int = 8,
    frames: int = 12,
    per_page: int = 20,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Write the browsing page of a converted dataset (local or URL) into ``out``.

    Returns what was built: ``page`` (the index.html), ``seconds``, ``bytes`` (the
    folder's total), ``thumbnails``, ``warnings`` (frames that failed to decode; each
    is a crossed-out tile on the page, never an error) and ``png`` (contact sheets).
    """
    start = time.perf_counter()
    ds = open_dataset(location, cache_dir=cache_dir)
    data, tiles = _page_data(ds, mode=clip_mode, length=clip_length, frames=frames)
    data["meta"]["per_page"] = max(1, int(per_page))
    built: dict = {}

    def build(folder: Path) -> None:
        warnings = render_sheets(ds, tiles, folder / "thumbs", workers=workers, progress=progress)
        data["meta"]["warnings"] = warnings
        data["grid"] = {"tile": list(TILE), "columns": SHEET_COLUMNS, "per_sheet": PER_SHEET, "folder": "thumbs"}
        m = ds.manifest
        unit = "tracklets" if ds.kind == "video" else "images"
        subtitle = f"{m['source']} version {ds.version}: {len(ds.index)} {unit}"
        written_page(folder, title=f"{m['source']} ({ds.version})", subtitle=subtitle, app="browser", data=data)
        built["warnings"] = warnings
        if png:
            from .sheets import contact_sheets

            built["png"] = [str(Path(out) / "png" / p.name) for p in contact_sheets(ds, folder / "png", ids=ids)]

    inputs = (ds.path,) if isinstance(ds.path, Path) else ()
    page = write_page(Path(out), build, inputs=inputs)
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    counts = Counter(w["key"] for w in built["warnings"])
    return {
        "page": str(page),
        "seconds": round(time.perf_counter() - start, 2),
        "bytes": size,
        "thumbnails": len(tiles),
        "warnings": built["warnings"],
        "samples_with_warnings": len(counts),
        "png": built.get("png", []),
    }

"""Contact sheets as PNG, for papers: one identity per file, views side by side, cameras in rows.

Each image (a tracklet: its middle frame) is scaled to fit ``size``; a column per
view (aerial, ground, wearable as the dataset names them), a row per camera inside
it, labelled. Frames that fail to decode are crossed out, as on the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ReidDataError
from .thumbs import placeholder, tile_image

__all__ = ["contact_sheets", "default_ids"]

PER_ROW = 8  # images per camera row; more wrap onto further rows
LABEL = 16  # pixels of text above a row


def default_ids(ds, count: int = 8) -> list[int]:
    """The ``count`` identities seen by the most cameras (ties: the smaller pid): the most telling sheets."""
    pids = ds.index.column("pid").to_numpy()
    cams = ds.index.column("camid").to_numpy()
    pairs = np.unique(np.stack([pids, cams], 1), axis=0)
    ids, counts = np.unique(pairs[:, 0], return_counts=True)
    keep = ids >= 0  # distractors (-1) are nobody
    ids, counts = ids[keep], counts[keep]
    return [int(p) for p in ids[np.lexsort((ids, -counts))][:count]]


def _image(reader, position: int, frames: int | None, size: tuple[int, int]) -> np.ndarray:
    try:
        return tile_image(reader.raw(position), None if frames is None else frames // 2, size)
    except Exception:  # noqa: BLE001 - a crossed tile, as on the page
        return placeholder(size)


def contact_sheets(ds, folder: Path, *, ids: list[int] | None = None, size: tuple[int, int] = (64, 128)) -> list[Path]:
    """Write ``folder/identity-<pid>.png`` for each of ``ids`` (default: ``default_ids``)."""
    from PIL import Image, ImageDraw

    from ..reader import ShardDataset

    folder.mkdir(parents=True, exist_ok=True)
    pids = ds.index.column("pid").to_numpy()
    cams, views = ds.index.column("camid").to_numpy(), np.asarray(ds.index.column("view").to_pylist())
    frames = ds.index.column("num_frames").to_pylist() if ds.kind == "video" else None
    known = set(pids.tolist())
    written = []
    for pid in ids if ids is not None else default_ids(ds):
        if pid not in known:
            raise ReidDataError(f"{ds.path}: no identity {pid} in this dataset (pids are index `pid` values)")
        rows = np.flatnonzero(pids == pid)
        reader = ShardDataset(ds, rows=rows, decode=None)
        columns = []  # (view, [(camera, [tile, ...]), ...])
        for view in sorted(set(views[rows].tolist())):
            cameras = []
            for cam in sorted(set(cams[rows][views[rows] == view].tolist())):
                positions = np.flatnonzero((views[rows] == view) & (cams[rows] == cam))
                tiles = [_image(reader, int(p), None if frames is None else frames[rows[p]], size) for p in positions]
                cameras.append((cam, tiles))
            columns.append((view, cameras))
        w, h = size
        widths = [min(PER_ROW, max(len(t) for _, t in cams)) * w for _, cams in columns]
        heights = [sum(LABEL + -(-len(t) // PER_ROW) * h for _, t in cams) for _, cams in columns]
        sheet = Image.new("RGB", (sum(widths) + 12 * len(columns), LABEL + max(heights)), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        x = 0
        for (view, cameras), width in zip(columns, widths):
            draw.text((x + 2, 1), f"{view}", fill=(0, 0, 0))
            y = LABEL
            for cam, tiles in cameras:
                draw.text((x + 2, y + 2), f"camera {cam}", fill=(80, 80, 80))
                y += LABEL
                for k, tile in enumerate(tiles):
                    sheet.paste(Image.fromarray(tile), (x + (k % PER_ROW) * w, y + (k // PER_ROW) * h))
                y += -(-len(tiles) // PER_ROW) * h
            x += width + 12
        path = folder / f"identity-{int(pid)}.png"
        sheet.save(path, optimize=True)
        written.append(path)
    return written

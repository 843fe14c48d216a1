"""Thumbnails from the shards, packed into sprite sheets: what the pages show.

A page of a 126k-image dataset cannot carry 126k image files and stay quick to copy or
open, so thumbnails are tiles of JPEG sheets (``SHEET_COLUMNS`` x ``SHEET_ROWS`` tiles of
``TILE``); tile ``t`` lies on sheet ``t // PER_SHEET`` at column ``t % SHEET_COLUMNS``
of its row. The page shows one with an ``<img>`` of the sheet cropped by CSS
(``object-fit: none`` and ``object-position``), so every visible thumbnail is a real
image element the browser decodes once per sheet.

Bytes come from the shards (the source tree is not needed): the sample's byte range,
checked as every reader checks it. A frame that does not decode becomes a placeholder
tile (grey, crossed) and a warning naming the sample, frame and error; the page never
breaks on it.
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PER_SHEET", "SHEET_COLUMNS", "TILE", "Tile", "render_sheets", "sheet_name", "tile_image"]

TILE = (40, 80)  # width, height: person crops are about 1:2
SHEET_COLUMNS = 16
SHEET_ROWS = 16
PER_SHEET = SHEET_COLUMNS * SHEET_ROWS
BACKGROUND = (32, 32, 32)
QUALITY = 80


@dataclass(frozen=True)
class Tile:
    """One thumbnail: index row ``row`` of the dataset, frame ``frame`` of a tracklet (None: an image)."""

    row: int
    frame: int | None = None


def sheet_name(number: int) -> str:
    return f"sheet-{number:06d}.jpg"


def placeholder(size: tuple[int, int] = TILE) -> np.ndarray:
    """A grey tile crossed in red: the image of a frame that failed to decode."""
    w, h = size
    tile = np.full((h, w, 3), 96, dtype=np.uint8)
    for y in range(h):
        x = int(y * (w - 1) / max(h - 1, 1))
        tile[y, max(x - 1, 0) : x + 1] = (200, 40, 40)
        tile[y, max(w - 2 - x, 0) : w - x] = (200, 40, 40)
    return tile


def fit(image: np.ndarray, size: tuple[int, int] = TILE) -> np.ndarray:
    """``image`` (HxWx3 uint8) scaled to fit ``size`` keeping its aspect, centred on the background."""
    from PIL import Image

    w, h = size
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0))
    tile = np.empty((h, w, 3), dtype=np.uint8)
    tile[:] = BACKGROUND
    y, x = (h - nh) // 2, (w - nw) // 2
    tile[y : y + nh, x : x + nw] = small
    return tile


def decode_small(data: bytes, size: tuple[int, int] = TILE) -> np.ndarray:
    """A JPEG decoded at the smallest DCT scale still at least ``size`` (much faster than full size).

    libjpeg-turbo's warnings are errors, as with ``convert --decode-check``: a damaged scan
    is a placeholder and a warning, never a silently grey thumbnail. Only a colour space
    simplejpeg does not convert (CMYK) goes to Pillow instead.
    """
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=size[0], min_height=size[1])
    except ValueError as exc:
        if "color" not in str(exc).lower():
            raise
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def tile_image(members: dict[str, bytes], frame: int | None, size: tuple[int, int] = TILE) -> np.ndarray:
    """The thumbnail of a sample's image, or of frame ``frame`` of a tracklet (JPEG or MP4 storage)."""
    if frame is None:
        return fit(decode_small(members["jpg"], size), size)
    if "mp4" in members:
        import json

        from ..video import decode_video_frames

        meta = json.loads(members["json"])
        return fit(decode_video_frames(members["mp4"], [frame], meta["frame_sizes"])[0], size)
    return fit(decode_small(members[f"{frame:04d}.jpg"], size), size)


# The reader of the dataset being rendered: set by render_sheets before its pool forks, so
# every worker inherits it (a ShardDataset opens its own descriptors in a new process).
_READER: dict = {}


@dataclass(frozen=True)
class _Job:
    folder: str
    number: int
    tiles: tuple[Tile, ...]
    size: tuple[int, int]


def _quiet_worker() -> None:
    """The pool ends its workers with SIGTERM: they die quietly (the CLI's handler is for the parent)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent cleans up and ends the pool


def _render_sheet(job: _Job) -> list[dict]:
    """Write one sheet; return a warning per tile that failed to decode."""
    from PIL import Image

    reader = _READER["reader"]
    w, h = job.size
    rows = -(-len(job.tiles) // SHEET_COLUMNS)
    sheet = np.empty((rows * h, SHEET_COLUMNS * w, 3), dtype=np.uint8)
    sheet[:] = BACKGROUND
    warnings, last = [], (None, None)
    for t, tile in enumerate(job.tiles):
        try:
            if last[0] != tile.row:  # a tracklet's frames share one read (checked as every reader checks it)
                last = (tile.row, reader.raw(tile.row))
            image = tile_image(last[1], tile.frame, job.size)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: a placeholder and a named warning
            image = placeholder(job.size)
            error = f"{type(exc).__name__}: {exc}"[:300]
            warnings.append({"key": reader.keys[tile.row], "frame": tile.frame, "error": error})
        y, x = (t // SHEET_COLUMNS) * h, (t % SHEET_COLUMNS) * w
        sheet[y : y + h, x : x + w] = image
    Image.fromarray(sheet).save(Path(job.folder) / sheet_name(job.number), quality=QUALITY, optimize=True)
    return warnings


def render_sheets(
    dataset,
    tiles: Sequence[Tile],
    folder: Path,
    *,
    size: tuple[int, int] = TILE,
    workers: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Render ``tiles`` of ``dataset`` (a ``ReidDataset``) into ``folder/sheet-NNNNNN.jpg``.

    Returns the warnings (``key``, ``frame``, ``error``) of tiles that did not decode,
    in tile order. ``workers`` > 1 renders sheets in that many forked processes (they
    inherit the reader; a remote dataset's shards come from the node's cache).
    """
    from ..reader import ShardDataset

    folder.mkdir(parents=True, exist_ok=True)
    _READER["reader"] = ShardDataset(dataset, rows=np.arange(len(dataset.index)), decode=None)
    jobs = [
        _Job(str(folder), n, tuple(tiles[s : s + PER_SHEET]), size)
        for n, s in enumerate(range(0, len(tiles), PER_SHEET))
    ]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tiles), unit="thumb", desc="thumbnails")
    warnings: list[dict] = []
    try:
        if workers > 1 and len(jobs) > 1:
            # fork: the CLI's parent holds no threads here, and spawn would import everything again per worker
            with multiprocessing.get_context("fork").Pool(min(workers, len(jobs)), initializer=_quiet_worker) as pool:
                for job, found in zip(jobs, pool.imap(_render_sheet, jobs)):
                    warnings += found
                    if bar is not None:
                        bar.update(len(job.tiles))
        else:
            for job in jobs:
                warnings += _render_sheet(job)
                if bar is not None:
                    bar.update(len(job.tiles))
    finally:
        _READER.clear()
        if bar is not None:
            bar.close()
    return warnings

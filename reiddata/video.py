"""Tracklets stored as one video member, and decoding only the frames a clip needs.

A tracklet's frames differ in size (a UAV crop grows and shrinks as the drone
moves), a video's frames cannot: each frame is pasted at the top-left of a canvas of
the tracklet's largest width and height (rounded up to even, as the codec needs) and
its own size is kept in the sample's ``frame_sizes``; reading crops it back. The
codec is MPEG-4 Part 2 (``mp4v``) in an MP4 container, written by OpenCV's FFmpeg
backend (deterministic bytes for the same frames) and read by decord, which seeks to
the requested frames instead of decoding the whole tracklet. It is lossy: the
figures are in the README (``benchmarks/temporal.py``).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CODEC", "EXTENSION", "FPS", "decode_jpeg_frames", "decode_video_frames", "encode_tracklet", "read_clip"]

CODEC = "mp4v"
EXTENSION = "mp4"
FPS = 25


def _canvas(sizes: Sequence[Sequence[int]]) -> tuple[int, int]:
    width = max(w for w, _ in sizes)
    height = max(h for _, h in sizes)
    return width + width % 2, height + height % 2


def encode_tracklet(jpegs: Sequence[bytes], sizes: Sequence[Sequence[int]]) -> bytes:
    """One MP4 of the tracklet's JPEG frames (``sizes``: each frame's width, height)."""
    import cv2

    width, height = _canvas(sizes)
    with tempfile.TemporaryDirectory(prefix="reiddata-video-") as tmp:
        path = str(Path(tmp) / f"tracklet.{EXTENSION}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*CODEC), FPS, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {CODEC} video (its FFmpeg backend is missing)")
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        for data, (w, h) in zip(jpegs, sizes):
            frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            canvas[:] = 0
            canvas[:h, :w] = frame
            writer.write(canvas)
        writer.release()
        return Path(path).read_bytes()


def decode_video_frames(data: bytes, indices: Sequence[int], sizes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """RGB frames ``indices`` of an encoded tracklet; only those are decoded (decord seeks)."""
    import decord

    # One thread: data-loader workers already decode samples in parallel, and a
    # thread pool per reader costs more than it returns on person crops (measured).
    reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
    unique = sorted(set(indices))
    batch = reader.get_batch(unique).asnumpy()
    frames = {i: batch[k, : sizes[i][1], : sizes[i][0]] for k, i in enumerate(unique)}
    return [frames[i] for i in indices]


def decode_jpeg_frames(jpegs: Sequence[bytes], indices: Sequence[int]) -> list[np.ndarray]:
    """RGB frames ``indices`` of a tracklet stored as JPEG members; only those are decoded."""
    from PIL import Image

    cache: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in cache:
            cache[i] = np.asarray(Image.open(io.BytesIO(jpegs[i])).convert("RGB"))
    return [cache[i] for i in indices]


def read_clip(sample: Mapping[str, object], indices: Sequence[int]) -> list[np.ndarray]:
    """The frames ``indices`` of a tracklet sample as webdataset yields it.

    ``sample`` maps member extensions to bytes: ``json`` and either ``0000.jpg``,
    ``0001.jpg``, ... (JPEG storage) or ``mp4`` (video storage).
    """
    raw = sample["json"]
    meta = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    if EXTENSION in sample:
        return decode_video_frames(sample[EXTENSION], indices, meta["frame_sizes"])  # type: ignore[arg-type]
    jpegs = [sample[f"{i:04d}.jpg"] for i in range(meta["num_frames"])]
    return decode_jpeg_frames(jpegs, indices)  # type: ignore[arg-type]

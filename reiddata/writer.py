"""Deterministic shard writing: tars, ``index.parquet``, wids lists, ``manifest.json``.

The bytes and rules are the format's (``reiddata.shard_format``); this module puts them
on disk, in parallel writer processes. Everything that ends up on disk is a function of
the input bytes and the options: tar members are sorted and carry mtime 0, uid/gid 0,
empty owner names and mode 0644; JSON has sorted keys; nothing records a time or a
machine path. The dataset is built in a hidden temporary folder beside ``out`` and
renamed into place only once the manifest (written last) is complete.
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from . import video
from .errors import bad_input
from .jpeg import JpegError, decode_check, jpeg_size
from .shard_format import BLOCK, MANIFEST, RECORD, canonical_json, manifest_bytes, tar_header, wids_bytes

__all__ = [
    "Item",
    "ShardPlan",
    "ShardResult",
    "shard_writers",
    "write_index",
    "write_manifest",
    "write_shard",
    "write_wids",
]

J, R = TypeVar("J"), TypeVar("R")  # a writer's job and its result


@dataclass(frozen=True)
class Item:
    """One sample to write: its metadata and the source file(s) holding its bytes."""

    meta: dict  # key, split, pid, ...; width/height are added from the JPEG header
    files: tuple[str, ...]  # paths of one image, or of a tracklet's frames in order


@dataclass(frozen=True)
class ShardPlan:
    name: str  # e.g. "train-000000.tar"
    split: str
    items: tuple[Item, ...]
    decode_check: bool = False
    storage: str = "jpeg"  # tracklets: "jpeg" frames or one "video" member


@dataclass(frozen=True)
class ShardResult:
    name: str
    sha256: str
    bytes: int
    # per item: (offset, size, what the writer added to its metadata: width, height, frame_sizes)
    placed: tuple[tuple[int, int, dict], ...]


IOV_MAX = 1024  # buffers per writev call (POSIX minimum of IOV_MAX on Linux)


def _read_file(path: str) -> bytes:
    """The whole file, through os.open/os.read: half the cost of ``open().read()`` per file,
    which counts at 100,000+ small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_image(path: str, check_decode: bool) -> tuple[bytes, int, int]:
    try:
        data = _read_file(path)
    except FileNotFoundError:
        raise bad_input(path, "image listed by the source is missing", "restore the file or fix the list") from None
    except IsADirectoryError:
        raise bad_input(path, "is a folder where the source lists an image", "fix the list or the tree") from None
    except OSError as exc:
        raise bad_input(path, f"cannot read the image ({exc.strerror or exc})") from None
    try:
        width, height = jpeg_size(data)
        if check_decode:
            decode_check(data)
    except JpegError as exc:
        raise bad_input(path, f"not a valid JPEG: {exc}", "re-extract this file from the original archive") from None
    return data, width, height


def _write_chunks(path: Path, chunks: list[bytes]) -> str:
    """Write ``chunks`` as one file with gathered writes (no joined copy); return its sha256."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # a fresh name in our partial folder
    try:
        for start in range(0, len(chunks), IOV_MAX):
            batch = chunks[start : start + IOV_MAX]
            written, total = os.writev(fd, batch), sum(map(len, batch))
            if written < total:  # a short write (rare on files): the rest, one write at a time
                rest = memoryview(b"".join(batch))[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
    finally:
        os.close(fd)
    return digest.hexdigest()


def write_shard(directory: Path, plan: ShardPlan) -> ShardResult:
    """Write one shard tar; return its hash and each sample's place and size."""
    path = directory / plan.name
    placed = []
    chunks: list[bytes] = []
    offset = 0
    for item in plan.items:  # items come sorted by key, so members are sorted too
        key = item.meta["key"]
        images = [_read_image(file, plan.decode_check) for file in item.files]
        width, height = images[0][1], images[0][2]
        meta = dict(item.meta, width=width, height=height)
        if "num_frames" not in meta:  # an image
            members = [(f"{key}.jpg", images[0][0])]
        else:  # a tracklet: its frames in order, or one video of them
            meta["frame_sizes"] = [[w, h] for _, w, h in images]
            if plan.storage == "video":
                members = [
                    (f"{key}.{video.EXTENSION}", video.encode_tracklet([d for d, _, _ in images], meta["frame_sizes"]))
                ]
            else:
                members = [(f"{key}.{i:04d}.jpg", data) for i, (data, _, _) in enumerate(images)]
        members.append((f"{key}.json", canonical_json(meta)))
        start = offset
        for name, data in members:
            pad = -len(data) % BLOCK
            chunks += (tar_header(name, len(data)), data, bytes(pad))
            offset += BLOCK + len(data) + pad
        added = {"width": width, "height": height}  # what the index gains beyond the item's metadata
        if "frame_sizes" in meta:
            added["frame_sizes"] = meta["frame_sizes"]
        placed.append((start, offset - start, added))
    end = offset + 2 * BLOCK  # two zero blocks close the archive
    chunks.append(b"\0" * (end + (-end % RECORD) - offset))
    sha256 = _write_chunks(path, chunks)
    return ShardResult(plan.name, sha256, end + (-end % RECORD), tuple(placed))


@contextmanager
def shard_writers(workers: int = 1, *, preload: str | None = None) -> Iterator[Callable[..., Iterator[tuple]]]:
    """Start ``workers`` writer processes now (they import what they need while the caller
    parses the source) and give a function ``run(directory, jobs, work=write_shard)`` that
    runs ``work(directory, job)`` for every job and yields (job, its result) in job order.

    ``jobs`` may be lazy: the next job is prepared here while the workers write the
    earlier ones. Workers come from a fork server, not a plain fork: forking a process
    whose threads (pyarrow's, a progress bar's) hold locks can hang the child.
    ``preload``: a module each worker imports at start (the caller's job code, with
    pyarrow and the sources), so the first job does not pay for it; the writer itself
    names no caller.
    """
    if workers <= 1:

        def run_here(directory: Path, jobs: Iterable[J], work: Callable[[Path, J], R] = write_shard):
            for job in jobs:
                yield job, work(directory, job)

        yield run_here
        return
    with multiprocessing.get_context("forkserver").Pool(workers, initializer=_preload, initargs=(preload,)) as pool:

        def run(directory: Path, jobs: Iterable[J], work: Callable[[Path, J], R] = write_shard):
            pending: deque = deque()
            for job in jobs:
                pending.append((job, pool.apply_async(work, (directory, job))))
                while pending and pending[0][1].ready():  # hand back what is done, in order
                    done, result = pending.popleft()
                    yield done, result.get()
            while pending:
                done, result = pending.popleft()
                yield done, result.get()

        yield run


def _preload(module: str | None) -> None:
    if module:
        importlib.import_module(module)


def write_index(path: Path, table: pa.Table) -> pa.Table:
    pq.write_table(table, path, compression="zstd")
    return table


def write_wids(directory: Path, split: str, shards: Sequence[Mapping], *, dataset: str) -> None:
    """The split's wids shard list (``wids.ShardListDataset("<split>.wids.json")``)."""
    (directory / f"{split}.wids.json").write_bytes(wids_bytes(split, shards, dataset=dataset))


def write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST).write_bytes(manifest_bytes(manifest))

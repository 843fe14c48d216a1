"""Deterministic shard writing: tars, ``index.parquet``, wids lists, ``manifest.json``.

Format version 1 (see the README). Everything that ends up on disk is a function of
the input bytes and the options: tar members are sorted and carry mtime 0, uid/gid 0,
empty owner names and mode 0644; JSON has sorted keys; nothing records a time or a
machine path. The dataset is built in a hidden temporary folder beside ``out`` and
renamed into place only once the manifest (written last) is complete.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import video
from .errors import ReidDataError, bad_input
from .jpeg import JpegError, decode_check, jpeg_size

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Item",
    "ShardPlan",
    "canonical_json",
    "content_version",
    "write_shards",
]

FORMAT = "reiddata-shards"
FORMAT_VERSION = 2  # 2: null attributes, manifest digests in the version, dataset card
MANIFEST = "manifest.json"
INDEX = "index.parquet"


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no spaces, ASCII: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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


BLOCK = 512
RECORD = 20 * BLOCK  # tar pads the archive to whole records, as GNU tar and tarfile do


def tar_header(name: str, size: int) -> bytes:
    """A USTAR header with the fixed metadata of the format (mtime 0, uid/gid 0, mode 0644).

    Built by hand because ``tarfile.addfile`` costs more than the rest of a
    conversion; ``tests/test_writer.py`` checks the bytes equal tarfile's.
    """
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ReidDataError(f"tar member name longer than 100 bytes: {name}")
    header = bytearray(BLOCK)
    header[0 : len(raw)] = raw
    header[100:108] = b"0000644\0"  # mode
    header[108:116] = b"0000000\0"  # uid
    header[116:124] = b"0000000\0"  # gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"00000000000\0"  # mtime 0
    header[148:156] = b" " * 8  # checksum counts itself as spaces
    header[156] = ord("0")  # regular file
    header[257:265] = b"ustar\x0000"
    # devmajor/devminor stay NUL for regular files, as tarfile writes them
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _read_image(path: str, check_decode: bool) -> tuple[bytes, int, int]:
    try:
        with open(path, "rb") as f:
            data = f.read()
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
            chunks += (tar_header(name, len(data)), data, b"\0" * pad)
            offset += BLOCK + len(data) + pad
        placed.append((start, offset - start, {k: meta[k] for k in meta.keys() - item.meta.keys()}))
    end = offset + 2 * BLOCK  # two zero blocks close the archive
    chunks.append(b"\0" * (end + (-end % RECORD) - offset))
    data = b"".join(chunks)  # one write and one hash per shard: tens of MB at most
    path.write_bytes(data)
    return ShardResult(plan.name, hashlib.sha256(data).hexdigest(), len(data), tuple(placed))


def _write_shard_job(job: tuple[Path, ShardPlan]) -> ShardResult:
    return write_shard(*job)


def write_shards(
    directory: Path,
    plans: Sequence[ShardPlan],
    *,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> list[ShardResult]:
    """Write all shards, in ``workers`` processes; results in plan order.

    Workers come from a fork server, not a plain fork: forking a process whose
    threads (pyarrow's, a progress bar's) hold locks can hang the child.
    """
    jobs = [(directory, plan) for plan in plans]
    results = []
    if workers <= 1 or len(plans) <= 1:
        iterator: Iterator[ShardResult] = map(_write_shard_job, jobs)
        for result in iterator:
            results.append(result)
            if on_progress:
                on_progress(len(result.placed))
        return results
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        for result in pool.imap(_write_shard_job, jobs):
            results.append(result)
            if on_progress:
                on_progress(len(result.placed))
    return results


def write_index(path: Path, rows: list[dict], schema: pa.Schema) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="zstd")
    return table


def write_wids(directory: Path, split: str, shards: Sequence[Mapping], *, dataset: str) -> None:
    """The split's wids shard list (``wids.ShardListDataset("<split>.wids.json")``)."""
    (directory / f"{split}.wids.json").write_bytes(wids_bytes(split, shards, dataset=dataset))


def wids_bytes(split: str, shards: Sequence[Mapping], *, dataset: str) -> bytes:
    """The wids list of ``shards`` (manifest entries: name, samples, bytes); ``verify`` regenerates it."""
    desc = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"{dataset}/{split}",
        "shardlist": [{"url": s["name"], "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards],
    }
    return canonical_json(desc) + b"\n"


def write_manifest(directory: Path, manifest: dict) -> None:
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    (directory / MANIFEST).write_text(text)


UNHASHED = ("version", "digests", "reiddata_version")  # the version itself; which release wrote it


def manifest_digests(manifest: Mapping) -> dict[str, str]:
    """A short sha256 of each manifest field's canonical JSON (``verify`` names a changed field)."""
    return {
        k: hashlib.sha256(canonical_json(v)).hexdigest()[:16] for k, v in sorted(manifest.items()) if k not in UNHASHED
    }


def content_version(shard_hashes: Mapping[str, str], index: pa.Table, digests: Mapping[str, str]) -> str:
    """Hash of every shard's bytes, of where the index places each sample, and of the manifest's meaning.

    The sample metadata in the index is a copy of the ``KEY.json`` members, which the
    shard hashes already cover (``verify`` checks the copy); the placement (key,
    shard, offset, size) is hashed as text, so the version does not depend on how
    pyarrow lays out or writes the table. The manifest's fields (counts, protocols
    and match rules, camera views, attribute schema, dropped counts, options) enter
    through their digests: editing one changes the version, and ``verify`` names it.
    """
    h = hashlib.sha256()
    h.update(f"{FORMAT}/{FORMAT_VERSION}\n".encode())
    for name in sorted(shard_hashes):
        h.update(f"{name} {shard_hashes[name]}\n".encode())
    columns = [index.column(c).to_pylist() for c in ("key", "shard", "offset", "size")]
    h.update("".join(f"{k} {s} {o} {n}\n" for k, s, o, n in zip(*columns)).encode())
    h.update("".join(f"{k} {v}\n" for k, v in sorted(digests.items())).encode())
    return h.hexdigest()[:16]

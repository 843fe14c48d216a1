"""Reading a converted dataset's manifest and index, treating every byte as hostile.

Nothing read from a dataset becomes a path, a URL or a command before it passes the
rules here: shard names ``<split>-NNNNNN.tar`` with split names of lower-case letters,
digits and ``_``; a 16-hex-digit version; index rows naming a shard of the manifest
with a byte range inside it. ``manifest_problems`` and ``index_problems`` list every
broken rule (``verify`` prints them all); ``load_manifest`` / ``load_index`` raise on
the first. ``meaning_problems`` checks the manifest's digests and the version, which
is cheap (no shard is read), so ``open_dataset`` refuses an edited manifest too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import bad_input
from .shard_format import (
    BLOCK,
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    KINDS,
    MANIFEST,
    MATCH_RULES,
    PROTOCOL,
    SHA256,
    SPLIT,
    VERSION,
    content_version,
    manifest_digests,
    shard_name_ok,
)
from .storage import FsspecStorage, LocalStorage, storage_for

__all__ = [
    "index_problems",
    "is_dataset",
    "load_index",
    "load_manifest",
    "manifest_problems",
    "read_index",
    "meaning_problems",
]


def is_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder reiddata converted (a manifest of our format): what --overwrite may replace."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _int(value: object, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _split_problems(split: str, summary: object) -> list[str]:
    if not isinstance(summary, dict) or not isinstance(summary.get("shards"), list) or not summary["shards"]:
        return [f"splits.{split}: needs a non-empty shards list"]
    problems = []
    if not _int(summary.get("samples"), 1):
        problems.append(f"splits.{split}.samples: not a positive integer")
    for n, shard in enumerate(summary["shards"]):
        where = f"splits.{split}.shards[{n}]"
        if not isinstance(shard, dict):
            problems.append(f"{where}: not an object")
            continue
        if not shard_name_ok(shard.get("name"), split):
            problems.append(f"{where}.name {shard.get('name')!r} is not {split}-NNNNNN.tar")
        if not _int(shard.get("samples"), 1) or not _int(shard.get("bytes"), BLOCK):
            problems.append(f"{where}: samples and bytes must be positive integers")
        if not isinstance(shard.get("sha256"), str) or not SHA256.match(shard["sha256"]):
            problems.append(f"{where}.sha256 is not 64 hex digits")
    return problems


def manifest_problems(manifest: object) -> list[str]:
    """Every rule of the format the parsed ``manifest.json`` breaks (empty: it may be used)."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    if manifest.get("format") != FORMAT:
        return [f"format is {manifest.get('format')!r}, not {FORMAT!r}"]
    problems = []
    if not isinstance(manifest.get("version"), str) or not VERSION.match(manifest["version"]):
        problems.append(f"version {manifest.get('version')!r} is not 16 hex digits")
    if manifest.get("kind") not in KINDS:
        problems.append(f"kind {manifest.get('kind')!r} is not one of {KINDS}")
    order, splits = manifest.get("split_order"), manifest.get("splits")
    if not isinstance(order, list) or not order or not isinstance(splits, dict):
        return [*problems, "split_order and splits are missing"]
    for split in order:
        if not isinstance(split, str) or not SPLIT.match(split):
            problems.append(f"split_order: {split!r} is not a split name (a-z, 0-9, _)")
    if sorted(map(str, order)) != sorted(splits):
        problems.append(f"split_order {order} and splits {sorted(splits)} differ")
    for split in order:
        if isinstance(split, str) and SPLIT.match(split):
            problems += _split_problems(split, splits.get(split))
    protocols, protocol_order = manifest.get("protocols"), manifest.get("protocol_order")
    if (
        not isinstance(protocols, dict)
        or not isinstance(protocol_order, list)
        or sorted(protocols) != sorted(map(str, protocol_order))
    ):
        problems.append("protocols and protocol_order are missing or differ")
    else:
        for name, info in protocols.items():
            if not PROTOCOL.match(name):
                problems.append(f"protocols: {name!r} is not a protocol name")
            elif not isinstance(info, dict) or info.get("match") not in MATCH_RULES:
                problems.append(f"protocols.{name}.match is not one of {MATCH_RULES}")
            elif info.get("query_in_gallery", False) is not True and "query_in_gallery" in info:
                problems.append(f"protocols.{name}.query_in_gallery must be true when present")
    if not isinstance(manifest.get("digests"), dict):
        problems.append("digests are missing")
    return problems


Storage = LocalStorage | FsspecStorage


def _storage(location: Path | str | Storage) -> Storage:
    return location if isinstance(location, (LocalStorage, FsspecStorage)) else storage_for(location)


def load_manifest(location: Path | str | Storage) -> dict:
    """The manifest of the dataset at ``location`` (a folder, a URL or a storage); errors name what is wrong."""
    storage = _storage(location)
    file = storage.join(MANIFEST)
    if not storage.exists(MANIFEST):
        raise bad_input(
            storage.location, f"is not a converted reiddata dataset (no {MANIFEST})", "run `reiddata convert` first"
        )
    try:
        manifest = json.loads(storage.read(MANIFEST))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_input(file, f"is not valid JSON ({exc})") from None
    if (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and manifest.get("format_version") != FORMAT_VERSION
    ):
        raise bad_input(
            file,
            f"format_version {manifest.get('format_version')!r} is not supported "
            f"(this reiddata reads {FORMAT_VERSION})",
            "convert the source again with this reiddata, or install the reiddata that wrote it",
        )
    problems = manifest_problems(manifest)
    if problems:
        raise bad_input(file, "; ".join(problems[:3]), "convert again; never edit a manifest by hand")
    return manifest


def shard_table(manifest: Mapping) -> dict[str, dict]:
    """Shard name -> its manifest entry, over all splits."""
    return {s["name"]: s for split in manifest["split_order"] for s in manifest["splits"][split]["shards"]}


def index_problems(index: pa.Table, manifest: Mapping) -> list[str]:
    """Rows naming no shard of the manifest, or a byte range outside their shard, or repeated keys."""
    for column in ("key", "split", "shard", "offset", "size"):
        if column not in index.column_names:
            return [f"{INDEX} has no {column!r} column"]
        if index.column(column).null_count:
            return [f"{INDEX}: column {column!r} has empty values"]
    shards = shard_table(manifest)
    # through Python lists: pyarrow's to_numpy() imports pandas (0.4 s of every `reiddata stats`)
    names = index.column("shard").to_pylist()
    offsets = np.asarray(index.column("offset").to_pylist())
    sizes = np.asarray(index.column("size").to_pylist())
    ends = np.asarray([shards[n]["bytes"] if n in shards else -1 for n in names], dtype=np.int64)
    known = ends >= 0
    problems = [f"{INDEX} row {i}: shard {names[i]!r} is not in the manifest" for i in np.flatnonzero(~known)[:3]]
    bad = known & ((offsets < 0) | (offsets % BLOCK != 0) | (sizes < 2 * BLOCK) | (offsets + sizes > ends))
    problems += [
        f"{INDEX} row {i}: bytes {offsets[i]}+{sizes[i]} are not a sample's range inside {names[i]}"
        for i in np.flatnonzero(bad)[:3]
    ]
    keys = index.column("key").to_pylist()
    if len(set(keys)) != len(keys):
        problems.append(f"{INDEX}: a key appears twice")
    if len(keys) != manifest.get("index", {}).get("rows"):
        problems.append(f"{INDEX}: {len(keys)} rows, the manifest says {manifest.get('index', {}).get('rows')}")
    return problems


def meaning_problems(manifest: Mapping, index: pa.Table) -> list[str]:
    """Manifest fields whose digest changed, and a version that its content does not give."""
    stored = manifest.get("digests", {})
    current = manifest_digests(manifest)
    problems = [
        f"manifest field {name!r} was changed after conversion (its digest differs)"
        for name in sorted(set(stored) | set(current))
        if stored.get(name) != current.get(name)
    ]
    hashes = {name: s["sha256"] for name, s in shard_table(manifest).items()}
    if content_version(hashes, index, stored) != manifest["version"]:
        problems.append(f"the shards, index placement and digests do not give the version {manifest['version']}")
    return problems


def read_index(location: Path | str | Storage) -> pa.Table:
    """The index table as stored, unchecked (``verify`` lists its problems itself)."""
    storage = _storage(location)
    file = storage.join(INDEX)
    if not storage.exists(INDEX):
        raise bad_input(file, "index missing: the dataset is incomplete", "convert again")
    try:
        return pq.ParquetFile(pa.BufferReader(storage.read(INDEX))).read()  # read_table loads pyarrow.dataset
    except (OSError, pa.ArrowException) as exc:
        raise bad_input(file, f"is not a readable parquet index ({exc})", "convert again") from None


def load_index(location: Path | str | Storage, manifest: Mapping) -> pa.Table:
    """The index of the dataset at ``location``, checked against its ``manifest``."""
    storage = _storage(location)
    index = read_index(storage)
    problems = index_problems(index, manifest) or meaning_problems(manifest, index)
    if problems:
        raise bad_input(storage.location, "; ".join(problems[:3]), "run `reiddata verify` on it, then convert again")
    return index

"""``reiddata verify``: recompute hashes and counts, and check the index against the shards."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import defaultdict
from pathlib import Path

from .convert import index_row
from .manifest import load_index, load_manifest
from .writer import INDEX, content_version

__all__ = ["verify"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _index_copy(meta: dict, row: dict) -> bool:
    """Whether index ``row`` is what convert writes for the ``KEY.json`` member ``meta``."""
    expected = index_row(meta, "attributes" in row, shard=row["shard"], offset=row["offset"], size=row["size"])
    # the index's roles struct has every protocol; the JSON only the sample's roles
    return expected == dict(row, roles={k: v for k, v in row["roles"].items() if v is not None})


def _check_shard(file: Path, rows: dict[str, dict]) -> list[str]:
    """Each sample's JSON member equals its index row, and its byte range holds it."""
    problems = []
    seen = set()
    with tarfile.open(file) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if ext != "json":
                continue
            seen.add(key)
            meta = json.loads(tar.extractfile(member).read())
            row = rows.get(key)
            if row is None:
                problems.append(f"{file}: sample {key} is not in the index")
            elif not _index_copy(meta, row):
                problems.append(f"{file}: index row of {key} differs from its {member.name}")
    for key in sorted(set(rows) - seen):
        problems.append(f"{file}: index lists {key}, the shard does not hold it")
    return problems


def verify(path: Path) -> list[str]:
    """Problems found in the dataset at ``path`` (empty when it matches its manifest)."""
    path = Path(path)
    manifest = load_manifest(path)
    problems = []
    index = load_index(path)
    hashes = {s["name"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}
    if content_version(hashes, index) != manifest["version"]:
        problems.append(f"{path / INDEX}: its content does not give the manifest's version {manifest['version']}")
    by_shard: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in index.to_pylist():
        by_shard[row["shard"]][row["key"]] = row
    for summary in manifest["splits"].values():
        for shard in summary["shards"]:
            file = path / shard["name"]
            rows = by_shard.pop(shard["name"], {})
            if not file.is_file():
                problems.append(f"{file}: shard missing")
                continue
            if file.stat().st_size != shard["bytes"]:
                problems.append(f"{file}: {file.stat().st_size} bytes, manifest says {shard['bytes']}")
            if _sha256(file) != shard["sha256"]:
                problems.append(f"{file}: sha256 differs from the manifest (the shard was changed or damaged)")
                continue
            if len(rows) != shard["samples"]:
                problems.append(f"{file}: {len(rows)} samples in the index, manifest says {shard['samples']}")
            problems += _check_shard(file, rows)
    for name in sorted(by_shard):
        problems.append(f"{path / name}: in the index but not in the manifest")
    return problems

"""``reiddata verify``: recompute every shard's hash and counts against the manifest."""

from __future__ import annotations

import hashlib
import tarfile
from collections import Counter
from pathlib import Path

from .manifest import load_index, load_manifest
from .writer import INDEX, content_version

__all__ = ["verify"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tar_samples(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len({m.name.split(".", 1)[0] for m in tar.getmembers()})


def verify(path: Path) -> list[str]:
    """Problems found in the dataset at ``path`` (empty when it matches its manifest)."""
    path = Path(path)
    manifest = load_manifest(path)
    problems = []
    index = load_index(path)
    index_shards = Counter(index.column("shard").to_pylist())
    hashes = {s["name"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}
    if content_version(hashes, index.to_pylist()) != manifest["version"]:
        problems.append(f"{path / INDEX}: its content does not give the manifest's version {manifest['version']}")
    listed = set()
    for summary in manifest["splits"].values():
        for shard in summary["shards"]:
            file = path / shard["name"]
            listed.add(shard["name"])
            if not file.is_file():
                problems.append(f"{file}: shard missing")
                continue
            if file.stat().st_size != shard["bytes"]:
                problems.append(f"{file}: {file.stat().st_size} bytes, manifest says {shard['bytes']}")
            if _sha256(file) != shard["sha256"]:
                problems.append(f"{file}: sha256 differs from the manifest (the shard was changed or damaged)")
                continue
            count = _tar_samples(file)
            if count != shard["samples"] or index_shards.get(shard["name"], 0) != shard["samples"]:
                problems.append(
                    f"{file}: {count} samples in the tar, {index_shards.get(shard['name'], 0)} in the index, "
                    f"manifest says {shard['samples']}"
                )
    for name in sorted(set(index_shards) - listed):
        problems.append(f"{path / name}: in the index but not in the manifest")
    return problems

"""``reiddata verify``: every byte and every stated fact of a dataset, checked.

What it checks, naming the file or the manifest field that is wrong:
- the manifest's rules (shard names, version, protocols), and each of its fields
  against the digest taken at conversion (an edited count, protocol, match rule,
  camera->view map, attribute schema or dropped count is named);
- the version against the shard hashes, the index placement and those digests;
- the counts the manifest states, recomputed from the index (samples, ids, cameras,
  views and frames per split; query/gallery counts per protocol), and every index
  row's view against the camera->view map;
- every shard's size and sha256, every sample's ``KEY.json`` against its index row
  and its byte range;
- the wids shard lists and the dataset card, regenerated from the manifest.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

from .hf import CARD, dataset_card
from .manifest import Storage, index_problems, load_manifest, meaning_problems, read_index, shard_table
from .shard_format import index_row, protocol_summary, split_summary, wids_bytes
from .sources import Protocol
from .storage import sha256_of, storage_for

__all__ = ["verify"]


def _index_copy(meta: dict, row: dict) -> bool:
    """Whether index ``row`` is what convert writes for the ``KEY.json`` member ``meta``."""
    expected = index_row(meta, "attributes" in row, shard=row["shard"], offset=row["offset"], size=row["size"])
    # the index's roles struct has every protocol; the JSON only the sample's roles
    return expected == dict(row, roles={k: v for k, v in row["roles"].items() if v is not None})


def _check_shard(storage: Storage, name: str, rows: dict[str, dict]) -> list[str]:
    """Each sample's JSON member equals its index row, and its byte range holds it."""
    file = storage.join(name)
    problems = []
    starts: dict[str, int] = {}  # key -> byte offset of its first member
    try:
        with storage.open(name) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                starts.setdefault(key, member.offset)
                if ext != "json":
                    continue
                meta = json.loads(tar.extractfile(member).read())
                row = rows.get(key)
                if row is None:
                    problems.append(f"{file}: sample {key} is not in the index")
                elif not _index_copy(meta, row):
                    problems.append(f"{file}: index row of {key} differs from its {member.name}")
                elif starts[key] != row["offset"]:
                    problems.append(f"{file}: {key} starts at byte {starts[key]}, the index says {row['offset']}")
    except (tarfile.TarError, ValueError) as exc:
        return [f"{file}: not a readable tar ({exc})"]
    for key in sorted(set(rows) - set(starts)):
        problems.append(f"{file}: index lists {key}, the shard does not hold it")
    return problems


def _stated_counts(manifest: dict, rows: list[dict]) -> list[str]:
    """Counts the manifest states that the index does not give (names the field)."""
    problems = []
    for split in manifest["split_order"]:
        stated = manifest["splits"][split]
        found = split_summary([r for r in rows if r["split"] == split], stated["shards"])
        problems += [
            f"manifest splits.{split}.{k}: {stated.get(k)!r}, the index gives {v!r}"
            for k, v in found.items()
            if stated.get(k) != v
        ]
    protocols = [
        Protocol(
            name, info.get("description", ""), info["match"], query_in_gallery=info.get("query_in_gallery") is True
        )
        for name, info in manifest["protocols"].items()
    ]
    found = protocol_summary(protocols, rows)
    for name, summary in found.items():
        for side in ("query", "gallery"):
            stated = manifest["protocols"][name].get(side)
            if stated != summary[side]:
                problems.append(f"manifest protocols.{name}.{side}: {stated!r}, the index gives {summary[side]!r}")
    views = manifest.get("camera_views", {})
    wrong = sorted({(r["camid"], r["view"]) for r in rows if views.get(str(r["camid"])) != r["view"]})
    problems += [f"manifest camera_views: camera {c} is {views.get(str(c))!r}, samples say {v!r}" for c, v in wrong]
    return problems


def _derived_files(storage: Storage, manifest: dict) -> list[str]:
    """The wids lists and the dataset card must be what the manifest gives."""
    problems = []
    for split in manifest["split_order"]:
        name = f"{split}.wids.json"
        expected = wids_bytes(split, manifest["splits"][split]["shards"], dataset=manifest["source"])
        if not storage.exists(name) or storage.read(name) != expected:
            problems.append(f"{storage.join(name)}: differs from the shard list of the manifest")
    card = dataset_card(manifest)
    if card is not None and (not storage.exists(CARD) or storage.read(CARD).decode() != card):
        problems.append(f"{storage.join(CARD)}: differs from the card the manifest gives")
    return problems


def verify(location: Path | str) -> list[str]:
    """Problems found in the dataset at ``location``, a folder or a URL (empty when it matches its manifest)."""
    storage = storage_for(location)
    manifest = load_manifest(storage)  # raises on a manifest that breaks the format's rules
    index = read_index(storage)
    problems = index_problems(index, manifest)
    if problems:
        return [f"{storage.location}: {p}" for p in problems]
    where = storage.join("manifest.json")
    problems = [f"{where}: {p}" for p in meaning_problems(manifest, index)]
    rows = index.to_pylist()
    problems += [f"{where}: {p}" for p in _stated_counts(manifest, rows)]
    problems += _derived_files(storage, manifest)
    by_shard: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_shard[row["shard"]][row["key"]] = row
    for name, shard in shard_table(manifest).items():
        file = storage.join(name)
        rows_here = by_shard.pop(name, {})
        if not storage.exists(name):
            problems.append(f"{file}: shard missing")
            continue
        size = storage.size(name)
        if size != shard["bytes"]:
            problems.append(f"{file}: {size} bytes, manifest says {shard['bytes']}")
        if sha256_of(storage, name) != shard["sha256"]:
            problems.append(f"{file}: sha256 differs from the manifest (the shard was changed or damaged)")
            continue
        if len(rows_here) != shard["samples"]:
            problems.append(f"{file}: {len(rows_here)} samples in the index, manifest says {shard['samples']}")
        problems += _check_shard(storage, name, rows_here)
    return problems

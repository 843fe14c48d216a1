"""Several converted datasets as one training set: ``open_dataset([a, b, ...])``.

Training on MSMT17 + Market-1501 (or AG-ReID.v2 + CARGO) must never merge two people
because both datasets number someone 42. Here every identity and camera is
namespaced by its dataset, as offsets in the order given:

- ``pid``: dataset k's pid p becomes ``p + pid_offset[k]``, the offset being the sum of
  ``max pid + 1`` of the datasets before it (distractors keep -1: nobody);
- ``label`` (train classes): dataset k's label l becomes ``l + label_offset[k]``, the
  sum of the earlier datasets' train identities, so labels stay contiguous;
- ``camid``: likewise ``c + camera_offset[k]`` (a camera of Market is not one of Duke);
- ``pid_raw`` and ``key`` become ``NAME/...``; views are merged by name (aerial is aerial).

Items read through ``CombinedShardDataset`` carry the namespaced values (the shards
themselves are the parts' own, read and checked as always). The combination's
``version`` is a hash of its parts' names and versions in order; its manifest lists
the parts. Protocols stay with their datasets: evaluate on each part.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import ReidDataError
from .reader import ReidDataset, ShardDataset

__all__ = ["CombinedDataset", "CombinedShardDataset", "combined_version", "open_combined", "split_reader"]

COLUMNS = ("key", "split", "pid", "pid_raw", "label", "camid", "view", "source")


def combined_version(parts: Sequence[tuple[str, str]]) -> str:
    """16 hex digits over the parts' (name, version) pairs, in order."""
    text = "reiddata-combined-1\n" + "".join(f"{name}\t{version}\n" for name, version in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CombinedDataset:
    """Datasets of one kind (images or tracklets) presented as one (see the module's rules)."""

    def __init__(self, parts: Sequence[ReidDataset]) -> None:
        if len(parts) < 2:
            raise ReidDataError("a combination needs at least two datasets")
        self.parts = list(parts)
        self.names = [p.manifest["source"] for p in parts]
        if len(set(self.names)) < len(self.names):
            raise ReidDataError(f"the same dataset twice in a combination: {self.names}")
        kinds = {p.kind for p in parts}
        if len(kinds) > 1:
            raise ReidDataError(f"cannot combine image and tracklet datasets: {dict(zip(self.names, kinds))}")
        self.kind = parts[0].kind
        self.version = combined_version([(n, p.version) for n, p in zip(self.names, parts)])
        self.path = " + ".join(str(p.path) for p in parts)
        self.pid_offsets, self.label_offsets, self.camera_offsets = [], [], []
        pid = label = camera = 0
        for p in parts:
            self.pid_offsets.append(pid)
            self.label_offsets.append(label)
            self.camera_offsets.append(camera)
            pid += int(max(p.index.column("pid").to_numpy().max(), -1)) + 1
            label += int(p.manifest["splits"]["train"]["ids"]) if "train" in p.manifest["splits"] else 0
            camera += max(int(c) for c in p.manifest["camera_views"]) + 1
        self.splits = tuple(dict.fromkeys(s for p in parts for s in p.splits))
        self.index = pa.concat_tables(self._part_index(k) for k in range(len(parts)))
        self.protocols: dict = {}
        self.manifest = self._manifest()

    def _part_index(self, k: int) -> pa.Table:
        part, name = self.parts[k], self.names[k]
        table = part.index
        pid, label = table.column("pid").to_numpy(), table.column("label").to_numpy()
        columns = {
            "key": [f"{name}/{key}" for key in table.column("key").to_pylist()],
            "split": table.column("split"),
            "pid": np.where(pid >= 0, pid + self.pid_offsets[k], pid),
            "pid_raw": [f"{name}/{raw}" for raw in table.column("pid_raw").to_pylist()],
            "label": np.where(label >= 0, label + self.label_offsets[k], label),
            "camid": np.where(
                table.column("camid").to_numpy() >= 0, table.column("camid").to_numpy() + self.camera_offsets[k], -1
            ),  # fmt: skip
            "view": table.column("view"),
            "source": table.column("source"),
            "part": np.full(len(table), k, dtype=np.int32),
        }
        if self._common_schema() is not None:
            columns["sid"] = table.column("sid")
        return pa.table(columns)

    def _common_schema(self) -> dict | None:
        """The attribute schema when every part has the same one (else None: no attributes)."""
        schemas = [p.manifest.get("attributes") for p in self.parts]
        return schemas[0] if schemas[0] is not None and all(s == schemas[0] for s in schemas) else None

    def _manifest(self) -> dict:
        splits = {}
        split = self.index.column("split").to_numpy(zero_copy_only=False)
        pids, cams = self.index.column("pid").to_numpy(), self.index.column("camid").to_numpy()
        views = np.asarray(self.index.column("view").to_pylist())
        for name in self.splits:
            here = split == name
            frames = sum(p.manifest["splits"].get(name, {}).get("frames", 0) for p in self.parts)
            splits[name] = {
                "samples": int(here.sum()),
                "ids": len(set(pids[here].tolist())),
                "cameras": sorted(set(cams[here].tolist())),
                "views": {v: int((views[here] == v).sum()) for v in sorted(set(views[here].tolist()))},
                "frames": int(frames),
                "shards": [],
            }
        camera_views = {}
        for k, p in enumerate(self.parts):
            for c, v in p.manifest["camera_views"].items():
                camera_views[str(int(c) + self.camera_offsets[k] if int(c) >= 0 else -1)] = v
        return {
            "source": "+".join(self.names),
            "kind": self.kind,
            "version": self.version,
            "parts": [
                {"source": n, "version": p.version, "location": str(p.path)} for n, p in zip(self.names, self.parts)
            ],
            "split_order": list(self.splits),
            "splits": splits,
            "protocols": {},
            "protocol_order": [],
            "camera_views": camera_views,
            "attributes": self._common_schema(),
        }

    def rows(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise ReidDataError(f"no split {split!r} in {self.path}: splits are {', '.join(self.splits)}")
        return np.flatnonzero(self.index.column("split").to_numpy(zero_copy_only=False) == split)

    def __repr__(self) -> str:
        return f"CombinedDataset({self.manifest['source']} {self.version}, {len(self.index)} samples)"


class CombinedShardDataset:
    """The map-style reader of a split of a ``CombinedDataset``: each part's ``ShardDataset``,
    one after another, with namespaced ``pid``, ``label``, ``camid`` and ``key`` on every item."""

    def __init__(self, combined: CombinedDataset, split: str, **options) -> None:
        combined.rows(split)  # the split exists somewhere
        self.combined = combined
        self.readers: list[tuple[int, ShardDataset]] = [
            (k, ShardDataset(part, split, **options)) for k, part in enumerate(combined.parts) if split in part.splits
        ]
        self.starts = np.cumsum([0] + [len(r) for _, r in self.readers]).tolist()
        c = combined
        self.keys = [f"{c.names[k]}/{key}" for k, r in self.readers for key in r.keys]
        self.pids = np.concatenate([np.where(r.pids >= 0, r.pids + c.pid_offsets[k], r.pids) for k, r in self.readers])
        self.labels = np.concatenate(
            [np.where(r.labels >= 0, r.labels + c.label_offsets[k], r.labels) for k, r in self.readers]
        )
        first_row = np.cumsum([0] + [len(part.index) for part in c.parts])  # the index is the parts' in order
        self.rows = np.concatenate([first_row[k] + r.rows for k, r in self.readers])

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, i: int) -> tuple[int, ShardDataset, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        n = bisect.bisect_right(self.starts, i) - 1
        k, reader = self.readers[n]
        return k, reader, i - self.starts[n]

    def __getitem__(self, i: int) -> dict:
        k, reader, j = self._locate(i)
        item = reader[j]
        c = self.combined
        item["key"] = f"{c.names[k]}/{item['key']}"
        if item["pid"] >= 0:
            item["pid"] += c.pid_offsets[k]
        if item["label"] >= 0:
            item["label"] += c.label_offsets[k]
        if item["camid"] >= 0:
            item["camid"] += c.camera_offsets[k]
        return item

    def set_epoch(self, epoch: int) -> None:
        for _, reader in self.readers:
            reader.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.readers[0][1].state_dict()  # the epoch, the same in every part

    def load_state_dict(self, state: dict) -> None:
        for _, reader in self.readers:
            reader.load_state_dict(state)


def open_combined(
    locations: Sequence[str | Path], *, cache_dir: str | Path | None = None, cache_limit: int | str | None = None
) -> CombinedDataset:
    return CombinedDataset([ReidDataset(loc, cache_dir=cache_dir, cache_limit=cache_limit) for loc in locations])


def split_reader(dataset, split: str, **options):
    """The map-style reader of ``split``: a ``ShardDataset``, or a ``CombinedShardDataset``
    for a combination (the same options; items with namespaced ids)."""
    if isinstance(dataset, CombinedDataset):
        return CombinedShardDataset(dataset, split, **options)
    return ShardDataset(dataset, split, **options)

"""Reading a converted dataset from any training loop: ``open_dataset`` and random access.

``open_dataset(path)`` gives the manifest, the index (a pyarrow table), the version,
the splits and the protocols. :class:`ShardDataset` is a map-style dataset (what
``torch.utils.data.DataLoader`` takes) over one split or one side of a protocol: it
reads a sample with a single ``pread`` of the byte range the index records, no scan.
Nothing here imports torch; the datasets work with any loader that indexes them.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import multiprocessing.context
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .cache import Prefetcher, ShardCache, default_cache_dir, node_slot, parse_size
from .errors import ReidDataError, bad_input
from .manifest import load_index, load_manifest, shard_table
from .shard_format import read_members
from .storage import sha256_of, storage_for
from .temporal import sample_clips

__all__ = ["ReidDataset", "SampleDecoder", "SharedEpoch", "ShardDataset", "checked_members"]


class SharedEpoch:
    """An epoch number that DataLoader worker processes see change.

    A worker holds a copy of the dataset made when it started, so with
    ``persistent_workers=True`` a plain attribute set later in the main process
    never reaches it, and every epoch would repeat epoch 0. The number lives in
    shared memory instead (inherited by forked workers, handed to spawned and
    forkserver workers as they start); pickled any other way it is a plain number.
    """

    def __init__(self, value: int = 0) -> None:
        self._cell = multiprocessing.RawValue("q", value)

    @property
    def value(self) -> int:
        return int(self._cell.value)

    @value.setter
    def value(self, epoch: int) -> None:
        self._cell.value = int(epoch)

    def __getstate__(self) -> dict:
        if multiprocessing.context.get_spawning_popen() is not None:  # a worker process starting
            return {"cell": self._cell}
        return {"value": self.value}

    def __setstate__(self, state: dict) -> None:
        if "cell" in state:
            self._cell = state["cell"]
        else:
            self._cell = multiprocessing.RawValue("q", state["value"])


@dataclass(frozen=True)
class ProtocolView:
    """One protocol of a dataset: which index rows are its queries and gallery."""

    name: str
    description: str
    match: str  # "camera" or "view": what makes a same-pid gallery item not count
    query: np.ndarray  # index row numbers
    gallery: np.ndarray


class ReidDataset:
    """A converted dataset on disk: manifest, index, splits, protocols (see ``open_dataset``).

    Opening checks what is cheap to check: the manifest's rules and digests, the
    version against the shard hashes and index placement, every index byte range
    against its shard, and every shard's size on disk against the manifest. Each
    shard's identity on disk (device, inode) is recorded, so a dataset replaced
    while a reader has it open is an error, never another version's samples.
    """

    def __init__(
        self, location: str | Path, *, cache_dir: str | Path | None = None, cache_limit: int | str | None = None
    ) -> None:
        self.storage = storage_for(location)
        # a Path for a local dataset; the URL for a remote one (messages, ``shard_urls``)
        self.path: Path | str = self.storage.path if not self.storage.remote else self.storage.location
        self.manifest = load_manifest(self.storage)
        self.index: pa.Table = load_index(self.storage, self.manifest)
        self.version: str = self.manifest["version"]
        self.kind: str = self.manifest["kind"]
        self.splits: tuple[str, ...] = tuple(self.manifest["split_order"])
        self.shards: dict[str, dict] = shard_table(self.manifest)
        self.cache = None
        if self.storage.remote:
            folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            limit = parse_size(cache_limit if cache_limit is not None else os.environ.get("REIDDATA_CACHE_LIMIT"))
            self.cache = ShardCache(self.storage, folder, self.version, self.shards, limit=limit)
        self.identities = {name: self._stat_shard(name) for name in self.shards}
        self._split = np.asarray(self.index.column("split").to_numpy(zero_copy_only=False))
        roles = self.index.column("roles").to_pylist()
        self.protocols: dict[str, ProtocolView] = {}
        for name in self.manifest["protocol_order"]:
            info = self.manifest["protocols"][name]
            column = np.asarray([r.get(name) for r in roles], dtype=object)
            gallery = column == "gallery"
            if info.get("query_in_gallery") is True:  # MARS as its authors evaluate it
                gallery |= column == "query"
            self.protocols[name] = ProtocolView(
                name,
                info["description"],
                info["match"],
                np.flatnonzero(column == "query"),
                np.flatnonzero(gallery),
            )

    def __repr__(self) -> str:
        return f"ReidDataset({self.manifest['source']} {self.version}, {len(self.index)} samples, {self.path})"

    def shard_path(self, name: str) -> Path | str:
        """The file (or URL) of shard ``name``: only names the manifest lists (validated), only inside the dataset."""
        if name not in self.shards:
            raise bad_input(self.path, f"{name!r} is not a shard of this dataset", "convert again")
        return self.storage.join(name) if self.storage.remote else self.path / name

    def _stat_shard(self, name: str) -> tuple[int, int] | None:
        file = self.shard_path(name)
        if self.storage.remote:  # a HEAD request: the cache checks the bytes themselves
            try:
                size = self.storage.size(name)
            except FileNotFoundError:
                raise bad_input(file, "shard missing in storage", "upload the whole dataset folder again") from None
            if size != self.shards[name]["bytes"]:
                raise bad_input(file, f"{size} bytes in storage, the manifest says {self.shards[name]['bytes']}")
            return None
        try:
            st = os.stat(file)
        except FileNotFoundError:
            raise bad_input(file, "shard missing", "copy the whole dataset folder again") from None
        expected = self.shards[name]["bytes"]
        if st.st_size != expected:
            raise bad_input(
                file,
                f"{st.st_size} bytes, the manifest says {expected}: the shard is truncated or changed",
                "copy it again or convert again; `reiddata verify` checks every shard",
            )
        return st.st_dev, st.st_ino

    def open_shard(self, name: str) -> int:
        """A read-only descriptor of shard ``name``, checked to be the file that was opened with the dataset.

        Remote datasets: the descriptor of the verified local copy (downloaded once per node),
        held in use (never evicted from the cache) until it is closed.
        """
        file = self.shard_path(name)
        if self.cache is not None:
            return self.cache.open(name)
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        st = os.fstat(fd) if fd >= 0 else None
        if st is None or (st.st_dev, st.st_ino) != self.identities[name] or st.st_size != self.shards[name]["bytes"]:
            if fd >= 0:
                os.close(fd)
            raise bad_input(
                file,
                f"was replaced after the dataset {self.version} was opened (another conversion wrote here?)",
                "open the dataset again; never convert over a dataset that is being read",
            )
        return fd

    def rows(self, split: str | None = None, *, protocol: str | None = None, side: str | None = None) -> np.ndarray:
        """Index row numbers of a split, or of one side ("query" | "gallery") of a protocol."""
        if (split is None) == (protocol is None):
            raise ReidDataError("give a split or a protocol (with side='query' or 'gallery'), not both")
        if split is not None:
            if split not in self.splits:
                raise ReidDataError(f"no split {split!r} in {self.path}: splits are {', '.join(self.splits)}")
            return np.flatnonzero(self._split == split)
        if protocol not in self.protocols:
            raise ReidDataError(f"no protocol {protocol!r} in {self.path}: protocols are {', '.join(self.protocols)}")
        if side not in ("query", "gallery"):
            raise ReidDataError(f"side must be 'query' or 'gallery', got {side!r}")
        return getattr(self.protocols[protocol], side)  # type: ignore[arg-type]

    def split_shards(self, split: str) -> list[dict]:
        """The manifest entries (name, samples, bytes, sha256) of a split's shards, in order."""
        self.rows(split)
        return self.manifest["splits"][split]["shards"]

    def check_shards(self) -> None:
        """Recompute every shard's sha256 against the manifest; raise naming the first bad one."""
        for name, shard in self.shards.items():
            if sha256_of(self.storage, name) != shard["sha256"]:
                raise bad_input(
                    self.shard_path(name),
                    "sha256 differs from the manifest: the shard is damaged",
                    "copy it again or convert again",
                )

    def shard_urls(self, split: str) -> list[str]:
        """Paths of a split's shards, in order (for webdataset, wids or any tar reader)."""
        return [str(self.shard_path(s["name"])) for s in self.split_shards(split)]


def checked_members(data: bytes, size: int, key: str, *, file, version: str, where: str = "") -> dict[str, bytes]:
    """:func:`read_members` of one sample's ``size`` bytes as read (a short read means a
    truncated shard), or an error naming the file, the dataset and the sample."""
    try:
        if len(data) != size:
            raise ValueError(f"the shard ends {size - len(data)} bytes short of the {size} the index gives")
        return read_members(data, key)
    except ValueError as exc:
        raise bad_input(
            file,
            f"dataset {version}: sample {key}{where}: {exc}",
            "run `reiddata verify`; copy the dataset again or convert again",
        ) from None


def decode_image(data: bytes, mode: str):
    """A JPEG as a PIL image (``pil``) or an RGB uint8 array (``numpy``, via OpenCV: faster)."""
    if mode == "numpy":
        import cv2

        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


class SampleDecoder:
    """Turns a sample's members into the dict a training loop gets (shared by both readers).

    ``decode``: ``pil`` (PIL image), ``numpy`` (RGB uint8 array, decoded by OpenCV:
    faster) or None (raw bytes). Tracklets: the temporal sampler picks ``clips``
    (``clip_mode``, ``clip_length``; train clips are random per ``(seed, epoch, key)``),
    and ``frames`` holds those frames in order, each transformed.
    """

    def __init__(
        self,
        *,
        transform: Callable | None = None,
        decode: str | None = "pil",
        train: bool = False,
        clip_mode: str = "tsn",
        clip_length: int = 8,
        seed: int = 0,
    ) -> None:
        if decode not in ("pil", "numpy", None):
            raise ReidDataError(f"decode must be 'pil', 'numpy' or None, got {decode!r}")
        self.transform, self.decode, self.train = transform, decode, train
        self.clip_mode, self.clip_length, self.seed = clip_mode, clip_length, seed
        self.shared_epoch = SharedEpoch()  # set_epoch in the main process reaches persistent workers

    @property
    def epoch(self) -> int:
        return self.shared_epoch.value

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.shared_epoch.value = epoch

    def __call__(self, members: dict[str, bytes]) -> dict:
        meta = json.loads(members["json"])
        out = {k: meta[k] for k in ("key", "pid", "label", "camid", "view")}
        if meta.get("attributes"):
            out["attributes"], out["sid"] = meta["attributes"], meta["sid"]
        if "num_frames" not in meta:
            out["image"] = self._image(members["jpg"])
            return out
        clips = sample_clips(
            meta["num_frames"],
            mode=self.clip_mode,
            length=self.clip_length,
            train=self.train,
            seed=self.seed,
            epoch=self.epoch,
            index=zlib.crc32(meta["key"].encode()),  # stable per sample, whichever reader
        )
        flat = [j for clip in clips for j in clip]
        out["clips"] = clips  # one clip, or several (dense): "frames" holds them in order
        if "mp4" in members:
            from .video import decode_video_frames

            out["frames"] = [self._array(f) for f in decode_video_frames(members["mp4"], flat, meta["frame_sizes"])]
        else:
            out["frames"] = [self._image(members[f"{j:04d}.jpg"]) for j in flat]
        return out

    def _image(self, data: bytes):
        if self.decode is None:
            return data
        image = decode_image(data, self.decode)
        return self.transform(image) if self.transform else image

    def _array(self, frame: np.ndarray):
        if self.decode == "pil":
            from PIL import Image

            frame = Image.fromarray(frame)
        return self.transform(frame) if self.transform else frame


class ShardDataset:
    """Map-style dataset over one split or one protocol side, read by byte offsets.

    ``dataset[i]`` is a dict: ``key``, ``pid``, ``label``, ``camid``, ``view``,
    ``attributes`` and ``sid`` (when the dataset has them), and ``image`` or, for
    tracklets, ``clips`` and ``frames`` (see :class:`SampleDecoder` for ``decode``,
    ``transform`` and the clip options; ``train`` defaults to ``split == "train"``).
    Instead of a split or protocol side, ``rows`` picks index rows directly.
    ``pids`` and ``labels`` (arrays, one per item) feed the samplers.

    Remote datasets: at its first item each process (a DataLoader worker) starts
    downloading its share of the reader's shards into the node's cache, ``prefetch`` at a
    time (0: none), so that the first batches wait for their own shards only. The
    workers and local ranks of a node split the shards between them (``node_slot``);
    one that needs a shard another is downloading waits for that download.
    """

    def __init__(
        self,
        dataset: ReidDataset | str | Path,
        split: str | None = None,
        *,
        protocol: str | None = None,
        side: str | None = None,
        rows: np.ndarray | None = None,
        transform: Callable | None = None,
        decode: str | None = "pil",
        train: bool | None = None,
        clip_mode: str = "tsn",
        clip_length: int = 8,
        seed: int = 0,
        prefetch: int = 2,
    ) -> None:
        self.dataset = dataset if isinstance(dataset, ReidDataset) else ReidDataset(dataset)
        self.prefetch = prefetch
        if rows is not None:  # any index rows, e.g. the union of every protocol's query and gallery
            self.rows = np.asarray(rows, dtype=np.int64)
        else:
            self.rows = self.dataset.rows(split, protocol=protocol, side=side)
        train = split == "train" if train is None else train
        self.decoder = SampleDecoder(
            transform=transform, decode=decode, train=train, clip_mode=clip_mode, clip_length=clip_length, seed=seed
        )
        table = self.dataset.index.take(pa.array(self.rows, type=pa.int64()))
        self._columns = {c: table.column(c).to_pylist() for c in ("shard", "offset", "size")}
        self.keys = table.column("key").to_pylist()
        self.pids = np.asarray(table.column("pid").to_numpy(), dtype=np.int64)
        self.labels = np.asarray(table.column("label").to_numpy(), dtype=np.int64)
        self._files: dict[str, int] = {}
        self._pid_of_files = -1

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Tracklets: train clips differ per epoch (call it where you call the sampler's).

        It reaches DataLoader workers, persistent ones included.
        """
        self.decoder.epoch = epoch

    def state_dict(self) -> dict:
        """The epoch (random access has no position: the sampler holds it), for torchdata's
        ``StatefulDataLoader``."""
        return {"epoch": self.decoder.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.decoder.epoch = int(state["epoch"])

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _files={}, _pid_of_files=-1)  # descriptors do not travel

    def _fd(self, shard: str) -> int:
        if self._pid_of_files != os.getpid():  # a forked worker opens its own descriptors
            self._files, self._pid_of_files = {}, os.getpid()
            self._start_prefetch()
        fd = self._files.get(shard)
        if fd is None:
            fd = self._files[shard] = self.dataset.open_shard(shard)
        return fd

    def _start_prefetch(self) -> None:
        """Remote: this process's share of the reader's shards (split order), downloaded in the background."""
        cache = self.dataset.cache
        if cache is None or self.prefetch < 1:
            return
        slot, slots = node_slot()
        names = list(dict.fromkeys(self._columns["shard"]))[slot::slots]
        Prefetcher(cache, [n for n in names if cache.cached(n) is None], depth=self.prefetch).start()

    def raw(self, i: int) -> dict[str, bytes]:
        """The members of item ``i`` by extension (one ``pread`` of its byte range), checked to be its sample."""
        c = self._columns
        shard, size, key = c["shard"][i], c["size"][i], self.keys[i]
        data = os.pread(self._fd(shard), size, c["offset"][i])
        return checked_members(data, size, key, file=self.dataset.shard_path(shard), version=self.dataset.version)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self.rows):
            raise IndexError(i)
        return self.decoder(self.raw(i))

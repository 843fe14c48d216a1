"""Streaming a split of WebDataset shards: sample-level rank split, per-epoch shuffling, exact lengths.

Each epoch the split's shards are put in an order seeded by ``(seed, epoch)``, the
same on every rank, and their samples form one sequence of N. Rank r of W reads
positions ``[r * N // W, (r + 1) * N // W)`` of it: every rank the same count
(``len(ds) == N // W``), disjoint, and together all but at most ``W - 1`` samples
(which change from epoch to epoch). A rank's range crosses shard boundaries: it
reads byte ranges of shards, starting at the index's byte offset of its first
sample, never the samples before it. DataLoader workers split the rank's range the
same way.

Shuffling is by blocks: a worker's samples are cut into consecutive blocks of
``shuffle`` samples, and each block is yielded in an order seeded by ``(seed,
epoch, rank, worker, block)``. Like a shuffle buffer of that size it mixes samples
from neighbouring shards (the shard order already changes every epoch), and unlike
one, position n of the output is a pure function of n: resuming there
(``load_state_dict``) seeks to the start of n's block by the index's byte offsets
and reads (never decodes) only the part of that block already yielded.

Reliability: a shard is read sequentially, each sample's byte range (from the
index) parsed by the checked tar-member parser of the map-style reader: header
checksums, the member names against the index's key, the range's size. A shard that
ends early, a damaged header, or a shard replaced by another version is an error
naming the dataset, the shard and the sample. Remote shards (HTTP, S3, any fsspec
URL) are streamed into a temporary file (``storage.FsspecStorage.stream``) and
checked against the manifest's sha256 before any of their samples is yielded. With ``cache=True`` the
verified shard is kept in the node's shard cache (within its ``cache_limit``).

Fetching ahead: each worker knows its shards for the epoch (its rank's and its own
share, in order), so while it decodes one it downloads and verifies the next
``prefetch``: through the node's cache (one download per node however many workers
and ranks read a shard; bounded by the cache budget) or, without a cache, into
temporary files (bounded by ``prefetch``).

Why not webdataset's own pipeline: its ``http`` opener runs ``curl`` through a
shell command built from the URL, and its ``tarfile``-based expander costs about
150 us per sample here (``python -m cProfile``: 3.2 of 3.5 s on 9,560 samples),
more than decoding the JPEG. The shards stay plain webdataset tars: webdataset, wids
and HF datasets read them (tests/test_loading.py).
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data

from .errors import ReidDataError
from .locations import open_dataset
from .reader import ReidDataset, SampleDecoder, checked_members
from .samplers import rank_and_world
from .storage import fetch_verified

__all__ = ["StreamingDataset"]

MIN_COVERAGE = 0.9  # below this share of a split per epoch, say so


@dataclass(frozen=True)
class Segment:
    """Consecutive samples of one shard: their keys and byte ranges (from the index), in order."""

    shard: str
    keys: tuple[str, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]


def _split_range(start: int, stop: int, parts: int, part: int) -> tuple[int, int]:
    """Part ``part`` of ``parts`` nearly equal consecutive pieces of ``[start, stop)``."""
    n = stop - start
    size, extra = divmod(n, parts)
    first = start + part * size + min(part, extra)
    return first, first + size + (part < extra)


class StreamingDataset(torch.utils.data.IterableDataset):
    """An iterable dataset over one split, for ``DataLoader(ds, batch_size=..., num_workers=...)``.

    Yields the same dicts as :class:`reiddata.ShardDataset` (see
    :class:`reiddata.reader.SampleDecoder` for ``decode``, ``transform`` and clips).
    ``shuffle`` is the shuffle block size (0: the epoch's shard order, samples in
    shard order). Call :meth:`set_epoch` before each epoch; it reaches persistent
    workers. ``state_dict`` / ``load_state_dict`` save and restore the position of
    each DataLoader worker (torchdata's ``StatefulDataLoader`` calls them in the
    workers). ``cache``: keep remote shards in the node's verified shard cache
    (else each is streamed into a temporary file, checked, used and dropped; default:
    cache when the dataset was opened with a ``cache_limit``). ``prefetch``: remote
    shards fetched ahead of the one being read, per worker.
    """

    def __init__(
        self,
        dataset: ReidDataset | str | Path,
        split: str,
        *,
        transform: Callable | None = None,
        decode: str | None = "pil",
        shuffle: int = 2000,
        seed: int = 0,
        node_split: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        train: bool | None = None,
        clip_mode: str = "tsn",
        clip_length: int = 8,
        cache: bool | None = None,
        prefetch: int = 2,
    ) -> None:
        super().__init__()
        self._yielded, self._resume_at, self.prefetch = 0, 0, prefetch
        self.dataset = dataset if isinstance(dataset, ReidDataset) else open_dataset(dataset)
        limited = self.dataset.cache is not None and self.dataset.cache.limit is not None
        self.cache = limited if cache is None else cache
        self.split, self.shuffle, self.seed = split, shuffle, seed
        self.rank, self.world_size = rank_and_world(rank, world_size)
        if self.world_size > 1 and not node_split:
            raise ReidDataError(
                f"{self.world_size} ranks without node_split would each read every sample of {split!r} "
                "(duplicated data)",
            )
        self.shards = [s["name"] for s in self.dataset.split_shards(split)]
        self._rows = self._shard_rows()
        self.total = sum(len(keys) for _, _, keys in self._rows.values())
        world = self.world_size if node_split else 1
        self.length = self.total // world
        self.coverage = self.length * world / self.total
        if self.coverage < MIN_COVERAGE:
            warnings.warn(
                f"{self.dataset.path} {split}: {world} ranks read {self.coverage:.0%} of its {self.total} samples "
                f"per epoch (each rank {self.length}); use fewer ranks for so small a split",
                stacklevel=2,
            )
        self.decoder = SampleDecoder(
            transform=transform,
            decode=decode,
            train=split == "train" if train is None else train,
            clip_mode=clip_mode,
            clip_length=clip_length,
            seed=seed,
        )

    def _shard_rows(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """Shard -> (offsets, sizes, keys) of its samples in file order, from the index."""
        index = self.dataset.index
        rows = self.dataset.rows(self.split)
        position = {name: j for j, name in enumerate(self.shards)}
        shard = np.asarray([position[s] for s in index.column("shard").to_numpy(zero_copy_only=False)[rows]])
        offset = index.column("offset").to_numpy()[rows]
        size = index.column("size").to_numpy()[rows]
        keys = np.asarray(index.column("key").to_numpy(zero_copy_only=False))[rows]
        order = np.lexsort((offset, shard))  # one sort: by shard, then by place in it
        bounds = np.searchsorted(shard[order], np.arange(len(self.shards) + 1))
        return {
            name: (offset[mine], size[mine], keys[mine].tolist())
            for name, mine in zip(self.shards, (order[a:b] for a, b in zip(bounds[:-1], bounds[1:])))
        }

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        return self.decoder.epoch

    def set_epoch(self, epoch: int) -> None:
        self.decoder.epoch = epoch

    def state_dict(self) -> dict:
        """This copy's position: the epoch and the samples yielded in it (in a DataLoader
        worker, that worker's)."""
        share = "shard" if self.shares_shards else "range"
        return {"epoch": self.epoch, "samples_yielded": self._yielded, "version": self.dataset.version, "share": share}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next ``iter`` starts after ``state``'s samples, reading none it skips whole."""
        if state.get("version") != self.dataset.version:
            raise ReidDataError(
                f"cannot resume the stream of {self.dataset.path}: the position was saved on dataset "
                f"{state.get('version')}, this is {self.dataset.version} (start the epoch afresh)"
            )
        share = "shard" if self.shares_shards else "range"
        if state.get("share", "range") != share:
            raise ReidDataError(
                f"cannot resume the stream of {self.dataset.path}: the position was saved with the workers "
                f"sharing out {state.get('share', 'range')}s, this stream shares out {share}s (keep `cache` as it was)"
            )
        self.set_epoch(int(state["epoch"]))
        self._resume_at = int(state["samples_yielded"])

    def segments(self, worker: int = 0, workers: int = 1, *, skip: int = 0) -> list[Segment]:
        """The byte ranges this rank's ``worker`` reads this epoch, in order, after its first ``skip`` samples.

        Each worker reads a consecutive part of the rank's range; through the node's shard
        cache, instead, each shard's part of that range is shared out between the workers,
        so that they read every shard together: one download serves them all at once, and
        an epoch starts after one shard's download, not one per worker."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        start, stop = self.rank * self.length, (self.rank + 1) * self.length
        together = self.shares_shards
        if not together:
            start, stop = _split_range(start, stop, workers, worker)
        out, position = [], 0
        for j in order.tolist():
            name = self.shards[j]
            offsets, sizes, keys = self._rows[name]
            first, last = max(start - position, 0), min(stop - position, len(keys))
            position += len(keys)
            if together and first < last:
                first, last = _split_range(first, last, workers, worker)
            dropped = min(skip, max(last - first, 0))  # the samples before the resume position
            first, skip = first + dropped, skip - dropped
            if first < last:
                mine = slice(first, last)
                out.append(Segment(name, tuple(keys[mine]), tuple(offsets[mine].tolist()), tuple(sizes[mine].tolist())))
        return out

    @property
    def shares_shards(self) -> bool:
        """Whether the workers read every shard together (remote, through the node's cache)."""
        return self.dataset.cache is not None and self.cache

    def _open(self, shard: str):
        """A binary file of the whole shard: local, the cached copy (held in use while it is
        open), or streamed into a temporary file and verified."""
        data = self.dataset
        if data.cache is None:
            return os.fdopen(data.open_shard(shard), "rb", buffering=1 << 20)
        if self.cache or data.cache.cached(shard) is not None:
            return os.fdopen(data.cache.open(shard), "rb", buffering=1 << 20)
        return fetch_verified(data.storage, shard, data.shards[shard])

    def _opened(self, segments: list[Segment]) -> Iterator[tuple[Segment, Future]]:
        """Each segment with its shard being opened, while the next are fetched: a local
        shard is opened one ahead; a remote one is downloaded ``prefetch`` ahead, into the
        node's cache (``ShardCache.prefetch``: within its budget, once per node) or into
        temporary files. One download at a time, in reading order: on a narrow link the
        shard needed now never shares it with the ones needed later."""
        remote = self.dataset.cache is not None
        depth = self.prefetch if remote else 1  # prefetch=0: each remote shard fetched when it is reached
        keep = remote and self.cache
        fetch = functools.partial(self.dataset.cache.prefetch, wait=True) if keep else self._open
        started: dict[int, Future] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            try:
                for i, segment in enumerate(segments):
                    for j in range(i, min(i + 1 + depth, len(segments))):  # this one first, then the next ones
                        if j not in started:
                            started[j] = pool.submit(fetch, segments[j].shard)
                    ahead = started.pop(i)
                    if keep:  # cached: wait for its download (a damaged shard is reported here), then open it
                        ahead.result()
                        ahead = Future()
                        ahead.set_result(self._open(segment.shard))
                    yield segment, ahead
            finally:  # an abandoned iteration: close what was opened ahead
                for future in started.values():
                    if not keep and future.exception() is None:
                        future.result().close()

    def _samples(self, segment: Segment, opened: Future) -> Iterator[dict]:
        """The members of each sample of one byte range, each checked against the index (key, headers, size)."""
        file = self.dataset.shard_path(segment.shard)
        with opened.result() as f:
            for count, (key, offset, size) in enumerate(zip(segment.keys, segment.offsets, segment.sizes)):
                f.seek(offset)  # samples lie back to back: a seek inside the read buffer
                data = f.read(size)
                where = f", after {count} whole samples"
                yield checked_members(data, size, key, file=file, version=self.dataset.version, where=where)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        block = self.shuffle or 1
        resume, self._resume_at = self._resume_at, 0
        first = resume // block  # the block holding the resume position
        segments = self.segments(worker, workers, skip=first * block)
        samples = itertools.chain.from_iterable(self._samples(s, f) for s, f in self._opened(segments))
        if self.shuffle:
            seed = f"{self.seed}/{self.epoch}/{self.rank}/{worker}"
            samples = _block_shuffled(samples, block, first, seed)
        self._yielded = resume  # now, not at the first sample: a state asked for before it is right
        return self._counted(itertools.islice(samples, resume - first * block, None))

    def _counted(self, samples: Iterator[dict]) -> Iterator[dict]:
        for sample in samples:
            self._yielded += 1
            yield self.decoder(sample)


def _block_shuffled(samples: Iterator[dict], size: int, first: int, seed: str) -> Iterator[dict]:
    """Consecutive blocks of ``size`` samples, each in an order seeded by ``seed`` and its
    number (counted from ``first``): a block's order does not depend on where reading began."""
    for b in itertools.count(first):
        chunk = list(itertools.islice(samples, size))
        if not chunk:
            return
        random.Random(f"{seed}/{b}").shuffle(chunk)
        yield from chunk

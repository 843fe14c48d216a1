"""Streaming a split's shards with webdataset: node and worker splitting, per-epoch
shuffling, an exact epoch length.

Each epoch, the split's shards are put in an order seeded by ``(seed, epoch)``, the
same on every rank; rank r takes shards r, r + W, ... of it (node split) and its
DataLoader workers share those out the same way. Samples are read sequentially
(webdataset's ``tarfile_to_samples``) and shuffled in a buffer seeded by ``(seed,
epoch, rank, worker)``.

Exact length: every rank yields the same number of samples per epoch, ``len(ds)``:
the sum of the ``S // W`` smallest shards of the split (S shards, W ranks), which any
rank's share reaches whatever the order. A rank holding more stops there; the
samples it leaves out change from epoch to epoch, and nothing is ever repeated. With
one rank the length is the whole split. Running on several ranks without the node
split would give every rank every sample: that is refused.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch.utils.data
import webdataset as wds

from .errors import ReidDataError
from .reader import ReidDataset, SampleDecoder, open_dataset
from .samplers import rank_and_world

__all__ = ["StreamingDataset"]


class StreamingDataset(torch.utils.data.IterableDataset):
    """An iterable dataset over one split, for ``DataLoader(ds, batch_size=..., num_workers=...)``.

    Yields the same dicts as :class:`reiddata.ShardDataset` (see
    :class:`reiddata.reader.SampleDecoder` for ``decode``, ``transform`` and clips).
    ``shuffle`` is the buffer size (0: shard order only, samples in shard order).
    Call :meth:`set_epoch` before each epoch.
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
    ) -> None:
        super().__init__()
        self.dataset = dataset if isinstance(dataset, ReidDataset) else open_dataset(dataset)
        self.dataset.rows(split)  # names the valid splits when this one does not exist
        self.split, self.shuffle, self.seed, self.epoch = split, shuffle, seed, 0
        self.node_split = node_split
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.shards = [(str(self.dataset.path / s["name"]), s["samples"]) for s in self._manifest_shards()]
        if self.world_size > 1 and not node_split:
            raise ReidDataError(
                f"{self.world_size} ranks without node_split would each read every sample of {split!r} "
                "(duplicated data)",
            )
        if self.node_split and len(self.shards) < self.world_size:
            raise ReidDataError(
                f"{split!r} has {len(self.shards)} shards for {self.world_size} ranks: every rank needs one; "
                "convert again with a smaller --shard-size"
            )
        self.decoder = SampleDecoder(
            transform=transform,
            decode=decode,
            train=split == "train" if train is None else train,
            clip_mode=clip_mode,
            clip_length=clip_length,
            seed=seed,
        )
        world = self.world_size if node_split else 1
        sizes = sorted(n for _, n in self.shards)
        self.length = sum(sizes[: len(sizes) // world])

    def _manifest_shards(self) -> list[dict]:
        return self.dataset.manifest["splits"][self.split]["shards"]

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.decoder.epoch = epoch

    def _mine(self, worker: int, workers: int) -> tuple[list[str], int]:
        """This worker's shard urls and how many samples it yields this epoch."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        world = self.world_size if self.node_split else 1
        rank_shards = [self.shards[j] for j in order[self.rank :: world]]
        split = [rank_shards[w::workers] for w in range(workers)]
        available = [sum(n for _, n in shards) for shards in split]
        excess = sum(available) - self.length
        quotas = list(available)
        for w in reversed(range(workers)):  # the same cut on every worker: all know all counts
            cut = min(excess, quotas[w])
            quotas[w] -= cut
            excess -= cut
        return [url for url, _ in split[worker]], quotas[worker]

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        urls, quota = self._mine(worker, workers)
        if not urls or quota == 0:
            return iter(())
        pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}")
        samples = _shuffled(iter(pipeline), self.shuffle, rng) if self.shuffle else iter(pipeline)
        return (self.decoder(s) for s in itertools.islice(samples, quota))


def _shuffled(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A reservoir-style shuffle buffer of ``size`` samples, seeded."""
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        j = rng.randrange(size)
        buffer[j], sample = sample, buffer[j]
        yield sample
    rng.shuffle(buffer)
    yield from buffer

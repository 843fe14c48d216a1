"""Mid-epoch resume through torchdata's StatefulDataLoader: map-style (sampler + dataset) and streaming."""

from __future__ import annotations

import itertools

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from reiddata import IdentityBalancedSampler, ReidDataError, ShardDataset, open_dataset
from reiddata.stream import StreamingDataset


def keys(items: list[dict]) -> list[str]:
    return [item["key"] for item in items]


def _map_loader(path, workers: int, epoch: int) -> StatefulDataLoader:
    data = ShardDataset(open_dataset(path), "train", decode=None)
    sampler = IdentityBalancedSampler(data.labels, p=1, k=4, seed=5)
    sampler.set_epoch(epoch)
    data.set_epoch(epoch)
    return StatefulDataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=keys)


def _stream_loader(path, workers: int, epoch: int, **options) -> StatefulDataLoader:
    data = StreamingDataset(open_dataset(path), "train", decode=None, shuffle=7, seed=5, **options)
    data.set_epoch(epoch)
    return StatefulDataLoader(data, batch_size=4, num_workers=workers, collate_fn=keys)


LOADERS = {"map": _map_loader, "stream": _stream_loader}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["map", "stream"])
def test_resume_after_two_batches_equals_the_uninterrupted_epoch(converted, kind, workers):
    path = converted("market1501")
    make = LOADERS[kind]
    whole = list(make(path, workers, epoch=3))
    assert len(whole) > 4

    first = make(path, workers, epoch=3)
    it = iter(first)
    head = [next(it), next(it)]
    state = first.state_dict()
    del it, first  # the job dies here

    resumed = make(path, workers, epoch=3)  # fresh objects, as in a new process
    resumed.load_state_dict(state)
    assert head + list(resumed) == whole
    if kind == "stream":  # a stream yields each sample of the rank's range once
        assert len({k for batch in whole for k in batch}) == sum(len(b) for b in whole)


def test_a_resumed_stream_reads_only_the_block_it_stopped_in(converted):
    """Position 23 with blocks of 7: the reader starts at sample 21 (by byte offset) and decodes from 23."""
    data = StreamingDataset(open_dataset(converted("market1501")), "train", decode=None, shuffle=7, seed=5)
    whole = keys(list(data))
    read, decoded = [], []
    samples, decoder = data._samples, data.decoder
    data._samples = lambda segment, opened: (read.append(s) or s for s in samples(segment, opened))
    data.decoder = lambda raw: decoded.append(raw) or decoder(raw)
    data.load_state_dict({"epoch": 0, "samples_yielded": 23, "version": data.dataset.version})
    assert keys(list(data)) == whole[23:]
    assert (len(read), len(decoded)) == (len(whole) - 21, len(whole) - 23)


def test_a_stream_rank_resumes_its_own_range(converted):
    path = converted("market1501")
    ranks = []
    for rank in (0, 1):
        data = StreamingDataset(open_dataset(path), "train", decode=None, shuffle=5, rank=rank, world_size=2)
        whole = keys(list(data))
        data.load_state_dict(data.state_dict() | {"samples_yielded": 6})
        assert keys(list(data)) == whole[6:]
        ranks.append(set(whole))
    assert not ranks[0] & ranks[1]


def test_resume_state_must_fit_the_data_and_batch_shape(converted):
    data = ShardDataset(open_dataset(converted("market1501")), "train", decode=None)
    state = IdentityBalancedSampler(data.labels, p=3, k=2).state_dict()
    with pytest.raises(ReidDataError, match="saved with k=2, now 4"):
        IdentityBalancedSampler(data.labels, p=3, k=4).load_state_dict(state)
    stream = StreamingDataset(open_dataset(converted("market1501")), "train", decode=None)
    with pytest.raises(ReidDataError, match="saved on dataset 0123456789abcdef"):
        stream.load_state_dict({"epoch": 0, "samples_yielded": 3, "version": "0123456789abcdef"})


def test_sampler_state_counts_batches_and_sets_the_epoch(converted):
    data = ShardDataset(open_dataset(converted("market1501")), "train", decode=None)
    sampler = IdentityBalancedSampler(data.labels, p=1, k=2, seed=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    it = iter(sampler)
    list(itertools.islice(it, 3))
    state = sampler.state_dict()
    assert (state["epoch"], state["batches_yielded"]) == (2, 3)
    other = IdentityBalancedSampler(data.labels, p=1, k=2, seed=1)
    other.load_state_dict(state)
    assert list(other) == whole[3:]
    assert list(other) == whole  # only the next epoch pass resumes; later ones are whole

"""Fetching shards ahead from object storage (real loopback servers): once per node, never an
unverified shard, within the cache budget; and the slow-network server the benchmark uses."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from servers import HttpServer  # tests/servers.py

from reiddata import ReidDataError, ShardDataset, StreamingDataset, convert, open_dataset
from reiddata.cache import parse_size


@pytest.fixture(scope="module")
def dataset(synth_tree, tmp_path_factory):
    """Market converted in shards of 8 (6 train shards) for the servers to serve."""
    out = tmp_path_factory.mktemp("prefetch") / "market"
    convert("market1501", synth_tree("market1501"), out, shard_size=8)
    return out


@pytest.fixture
def slow(dataset):
    """A slower network: 20 ms before each response, 20 MB/s shared."""
    server = HttpServer(dataset.parent, rate=20e6, latency=0.02)
    yield server
    server.stop()


def _wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _downloads(server: HttpServer, dataset: Path, names, before: Counter) -> dict[str, int]:
    got = Counter(server.gets) - before
    return {name: got[f"{dataset.name}/{name}"] for name in names}


def test_streaming_fetches_each_shard_once_per_node_across_workers_and_epochs(dataset, http, tmp_path):
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    stream = StreamingDataset(ds, "train", decode=None, shuffle=0, cache=True, prefetch=2)
    shards = [s["name"] for s in ds.split_shards("train")]
    before = Counter(http.gets)
    for epoch in range(2):  # two workers share the shard on their boundary; the second epoch reads the cache
        stream.set_epoch(epoch)
        keys = [s["key"] for s in torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)]
        assert len(keys) == len(set(keys)) == len(stream)
    assert _downloads(http, dataset, shards, before) == dict.fromkeys(shards, 1)


def test_map_style_readers_prefetch_their_shards_in_the_background(dataset, slow, tmp_path):
    ds = open_dataset(f"{slow.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    train = ShardDataset(ds, "train", decode=None, prefetch=2)
    shards = [s["name"] for s in ds.split_shards("train")]
    before = Counter(slow.gets)
    train.raw(0)  # one item read; the others' shards arrive without being asked for
    assert _wait_for(lambda: all(ds.cache.cached(name) for name in shards))
    assert _downloads(slow, dataset, shards, before) == dict.fromkeys(shards, 1)
    assert [train.raw(i)["json"] for i in range(len(train))]  # all there, nothing fetched again
    assert _downloads(slow, dataset, shards, before) == dict.fromkeys(shards, 1)


@pytest.mark.parametrize("cache", [True, False])
def test_streaming_fetches_the_next_shards_while_one_is_read(dataset, slow, tmp_path, cache):
    ds = open_dataset(f"{slow.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    stream = StreamingDataset(ds, "train", decode=None, shuffle=0, cache=cache, prefetch=2)
    order = [s.shard for s in stream.segments()]
    before = Counter(slow.gets)
    samples = iter(stream)
    next(samples)  # the first shard is being read: the next two are on their way, the fourth is not
    assert _wait_for(lambda: all(_downloads(slow, dataset, order[1:3], before).values()))
    time.sleep(0.2)
    assert _downloads(slow, dataset, order, before) == {name: int(k < 3) for k, name in enumerate(order)}
    rest = list(samples)
    assert len(rest) + 1 == len(stream)
    assert _downloads(slow, dataset, order, before) == dict.fromkeys(order, 1)


def test_without_prefetch_each_shard_is_fetched_when_it_is_reached(dataset, slow, tmp_path):
    ds = open_dataset(f"{slow.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    stream = StreamingDataset(ds, "train", decode=None, shuffle=0, prefetch=0)
    order = [s.shard for s in stream.segments()]
    before = Counter(slow.gets)
    next(iter(stream))
    time.sleep(0.3)
    assert _downloads(slow, dataset, order, before) == {name: int(k == 0) for k, name in enumerate(order)}


@pytest.fixture
def damaged(dataset, tmp_path):
    """The dataset with one byte of the second shard of the first epoch's order flipped (same size)."""
    copy = tmp_path / "damaged" / dataset.name
    shutil.copytree(dataset, copy)
    order = [s.shard for s in StreamingDataset(open_dataset(copy), "train", decode=None, shuffle=0).segments()]
    path = copy / order[1]
    body = bytearray(path.read_bytes())
    body[1000] ^= 1
    path.write_bytes(bytes(body))
    server = HttpServer(copy.parent)
    yield f"{server.url}/{dataset.name}", order
    server.stop()


@pytest.mark.parametrize("cache", [True, False])
def test_a_damaged_shard_is_never_served_prefetched_or_not(damaged, tmp_path, cache):
    url, order = damaged
    ds = open_dataset(url, cache_dir=tmp_path / "cache")
    stream = StreamingDataset(ds, "train", decode=None, shuffle=0, cache=cache, prefetch=2)
    first = stream.segments()[0]
    keys = []
    with pytest.raises(ReidDataError, match=rf"{order[1]}: the bytes in storage .* not served"):
        for sample in stream:  # the damaged shard was fetched (and refused) while the first was read
            keys.append(sample["key"])
    assert keys == list(first.keys)  # all of the first shard, nothing of the damaged one
    mapped = ShardDataset(ds, "train", decode=None, prefetch=2)
    shard_of = mapped._columns["shard"]
    with pytest.raises(ReidDataError, match="not served"):
        mapped.raw(shard_of.index(order[1]))
    assert mapped.raw(shard_of.index(order[0]))["json"]
    assert not list((tmp_path / "cache").rglob(order[1]))


def test_the_cache_budget_holds_while_an_epoch_streams_through(dataset, http, tmp_path):
    largest = max(s["bytes"] for s in open_dataset(dataset).split_shards("train"))
    limit = 3 * largest  # the one being read and two ahead, no more
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache", cache_limit=limit)
    folder = tmp_path / "cache" / ds.version
    on_disk, done = [0], threading.Event()

    def watch() -> None:  # the bytes in the cache folder, shards and partial downloads, as often as it can
        while not done.is_set():
            total = 0
            for entry in os.scandir(folder) if folder.is_dir() else ():
                if not entry.name.endswith(".lock"):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # evicted or renamed in between
                        pass
            on_disk[0] = max(on_disk[0], total)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stream = StreamingDataset(ds, "train", decode=None, shuffle=0, prefetch=2)  # a limit: through the cache
    try:
        for epoch in range(2):
            stream.set_epoch(epoch)
            keys = [s["key"] for s in stream]
            assert len(keys) == len(set(keys)) == len(stream)
            assert ds.cache.used() <= limit
    finally:
        done.set()
        watcher.join()
    assert 0 < on_disk[0] <= limit
    assert len(list(folder.glob("*.tar"))) < len(ds.split_shards("train"))  # some were evicted


def test_a_shard_in_use_is_never_evicted(dataset, http, tmp_path):
    sizes = {s["name"]: s["bytes"] for s in open_dataset(dataset).split_shards("train")}
    names = sorted(sizes)
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache", cache_limit=2 * max(sizes.values()))
    held = ds.cache.open(names[0])  # the least recently opened of all, and in use
    try:
        for name in names[1:]:
            os.close(ds.cache.open(name))
        assert ds.cache.cached(names[0]) is not None
        assert sum(ds.cache.cached(n) is not None for n in names) == 2  # the held one and the latest
    finally:
        os.close(held)
    os.close(ds.cache.open(names[1]))  # released: now it may go
    assert ds.cache.cached(names[0]) is None


def test_cache_limits_read_as_people_write_them():
    assert parse_size("500MB") == 500_000_000 and parse_size("40GiB") == 40 * 2**30
    assert parse_size("2T") == 2 * 10**12 and parse_size(123) == 123 and parse_size(None) is None
    with pytest.raises(ValueError, match="expected bytes"):
        parse_size("forty gigs")


def test_the_slow_server_paces_what_it_sends(dataset, slow):
    import urllib.request

    name = f"{dataset.name}/{open_dataset(dataset).split_shards('train')[0]['name']}"
    start = time.perf_counter()
    body = urllib.request.urlopen(f"{slow.url}/{name}").read()
    elapsed = time.perf_counter() - start
    assert body == (dataset.parent / name).read_bytes()
    assert elapsed >= 0.9 * (len(body) / 20e6 + 0.02)  # it cannot be faster than its link
    request = urllib.request.Request(f"{slow.url}/{name}", headers={"Range": "bytes=10-19"})
    assert urllib.request.urlopen(request).read() == body[10:20]


def test_a_child_forked_mid_download_does_not_keep_the_download_locked(tmp_path):
    from reiddata.cache import _exclusive

    lock = tmp_path / ".train-000000.tar.lock"
    released_r, released_w = os.pipe()
    with _exclusive(lock, create=True) as fd:
        assert fd is not None
        pid = os.fork()
        if pid == 0:  # the child: once the parent is done, the shard's lock must be free
            os.read(released_r, 1)
            with _exclusive(lock, wait=False) as mine:
                os._exit(0 if mine is not None else 1)
    os.write(released_w, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_through_the_cache_the_workers_of_a_rank_read_each_shard_together(dataset, http, tmp_path):
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    shared = StreamingDataset(ds, "train", decode=None, shuffle=0, cache=True)
    apart = StreamingDataset(ds, "train", decode=None, shuffle=0, cache=False)
    parts = [shared.segments(w, 2) for w in range(2)]
    assert [s.shard for s in parts[0]] == [s.shard for s in parts[1]] == [s.shard for s in shared.segments()]
    assert sorted(k for p in parts for s in p for k in s.keys) == sorted(k for s in shared.segments() for k in s.keys)
    assert len({s.shard for s in apart.segments(0, 2)} & {s.shard for s in apart.segments(1, 2)}) <= 1
    resumed = shared.segments(1, 2, skip=5)  # a resumed worker skips its own first samples
    assert [k for s in resumed for k in s.keys] == [k for s in parts[1] for k in s.keys][5:]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_cached_stream_resumes_where_it_stopped(dataset, http, tmp_path, workers):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def loader() -> StatefulDataLoader:
        ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache")
        data = StreamingDataset(ds, "train", decode=None, shuffle=7, seed=5, cache=True)
        data.set_epoch(2)
        return StatefulDataLoader(data, batch_size=4, num_workers=workers, collate_fn=lambda b: [s["key"] for s in b])

    whole = list(loader())
    first = loader()
    it = iter(first)
    head = [next(it), next(it)]
    state = first.state_dict()
    del it, first
    resumed = loader()
    resumed.load_state_dict(state)
    assert head + list(resumed) == whole
    uncached = StreamingDataset(open_dataset(f"{http.url}/{dataset.name}"), "train", decode=None, cache=False)
    worker_state = {"epoch": 2, "samples_yielded": 3, "version": uncached.dataset.version, "share": "shard"}
    with pytest.raises(ReidDataError, match="keep `cache` as it was"):
        uncached.load_state_dict(worker_state)

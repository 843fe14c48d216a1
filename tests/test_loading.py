"""Reading the shards: open_dataset, random access, streaming, samplers, HF and wids interop."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from reiddata import (
    IdentityBalancedSampler,
    ReidDataError,
    ShardDataset,
    StreamingDataset,
    convert,
    open_dataset,
    pk_batches,
    to_hf_dataset,
)


@pytest.fixture(scope="module")
def small_shards(synth_tree, tmp_path_factory):
    """Market with 24 identities in shards of 10 samples: enough shards for 2 ranks x 2 workers."""
    out = tmp_path_factory.mktemp("small") / "market"
    convert("market1501", synth_tree("market1501", identities=24), out, shard_size=10)
    return out


# --- open_dataset and bad input ---------------------------------------------


def test_open_dataset_gives_splits_protocols_and_version(converted):
    out = converted("agreid-v2")
    ds = open_dataset(out)
    manifest = json.loads((out / "manifest.json").read_text())
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert ds.version == manifest["version"] and ds.splits == ("train", "query", "gallery")
    assert list(ds.protocols) == ["a2c", "a2w", "c2a", "w2a"]
    for name, protocol in ds.protocols.items():
        assert protocol.match == "camera"
        assert protocol.query.tolist() == [i for i, r in enumerate(index) if r["roles"][name] == "query"]
        assert protocol.gallery.tolist() == [i for i, r in enumerate(index) if r["roles"][name] == "gallery"]
    assert open_dataset(converted("cargo")).protocols["a2g"].match == "view"


def test_bad_paths_versions_names_and_shards(converted, tmp_path):
    with pytest.raises(ReidDataError, match="is not a converted reiddata dataset"):
        open_dataset(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(converted("market1501"), copy)
    ds = open_dataset(copy)
    with pytest.raises(ReidDataError, match="no split 'val' .* splits are train, query, gallery"):
        ShardDataset(ds, "val")
    with pytest.raises(ReidDataError, match="no protocol 'a2g' .* protocols are standard"):
        ds.rows(protocol="a2g", side="query")
    shard = copy / "gallery-000000.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ReidDataError, match="gallery-000000.tar: sha256 differs from the manifest"):
        ds.check_shards()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReidDataError, match="format_version 99 is not supported"):
        open_dataset(copy)


# --- map-style random access ---------------------------------------------------


def test_map_style_items_are_the_index_rows_and_source_images(converted, synth_tree):
    out = converted("market1501")
    tree = synth_tree("market1501") / "Market-1501-v15.09.15"
    index = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    ds = ShardDataset(out, "gallery")
    assert len(ds) == sum(r["split"] == "gallery" for r in index.values())
    for i in range(len(ds)):
        item = ds[i]
        row = index[item["key"]]
        assert (item["pid"], item["label"], item["camid"], item["view"]) == (
            row["pid"],
            row["label"],
            row["camid"],
            row["view"],
        )
        assert item.get("attributes") == row["attributes"]
        expected = np.asarray(Image.open(tree / row["source"]).convert("RGB"))
        assert np.array_equal(np.asarray(item["image"]), expected)
    numpy = ShardDataset(out, protocol="standard", side="query", decode="numpy", transform=lambda a: a[::2])
    assert numpy[0]["image"].shape == (64, 64, 3)


def test_random_access_reads_only_its_own_byte_range(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted("market1501"), copy)
    ds = ShardDataset(copy, "train")
    rows = pq.read_table(copy / "index.parquet").to_pylist()
    first, second = rows[0], rows[1]
    assert first["shard"] == second["shard"]
    with open(copy / first["shard"], "r+b") as f:  # wreck sample 0 entirely
        f.seek(first["offset"])
        f.write(b"\xff" * first["size"])
    assert ds[1]["key"] == second["key"]  # sample 1 is read without scanning past sample 0


def test_tracklets_give_clips_through_the_temporal_sampler(converted):
    out = converted("g2a-vreid")
    train = ShardDataset(out, "train", clip_mode="restricted", clip_length=4, decode="numpy")
    test = ShardDataset(out, "query", clip_mode="dense", clip_length=4, decode="numpy")
    item = train[0]
    assert len(item["clips"]) == 1 and len(item["frames"]) == 4
    assert all(f.ndim == 3 for f in item["frames"])
    train.set_epoch(0)
    a = [train[i]["clips"] for i in range(len(train))]
    train.set_epoch(1)
    b = [train[i]["clips"] for i in range(len(train))]
    assert a != b
    dense = test[0]
    assert len(dense["frames"]) == 4 * len(dense["clips"]) >= 4


# --- IdentityBalancedSampler ------------------------------------------------


def _pids() -> np.ndarray:
    # 23 identities with 1 to 9 instances each, in no particular order
    rng = np.random.default_rng(5)
    pids = np.repeat(np.arange(100, 123), rng.integers(1, 10, size=23))
    return rng.permutation(pids)


def test_batches_are_p_identities_by_k_and_an_epoch_covers_every_identity():
    pids = _pids()
    sampler = IdentityBalancedSampler(pids, p=4, k=3, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6  # ceil(23 / 4)
    seen = set()
    for batch in batches:
        counts = Counter(pids[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        seen |= set(counts)
        for pid in counts:
            members = [i for i in batch if pids[i] == pid]
            if (pids == pid).sum() >= 3:  # without replacement when there are enough
                assert len(set(members)) == 3
    assert seen == set(pids.tolist())


def test_ranks_get_disjoint_batches_of_equal_count():
    pids = _pids()
    ranks = [list(IdentityBalancedSampler(pids, p=4, k=2, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    as_sets = [{tuple(b) for b in batches} for batches in ranks]
    assert not as_sets[0] & as_sets[1]
    assert set(pids[[i for b in ranks[0] + ranks[1] for i in b]].tolist()) == set(pids.tolist())


def test_same_seed_and_epoch_same_order_new_epoch_another():
    pids = _pids()
    a, b = IdentityBalancedSampler(pids, p=4, k=2, seed=3), IdentityBalancedSampler(pids, p=4, k=2, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(IdentityBalancedSampler(pids, p=4, k=2, seed=4)) != first


def test_sampler_feeds_a_dataloader_over_the_shards(converted):
    ds = ShardDataset(converted("market1501"), "train", decode="numpy", transform=lambda a: torch.from_numpy(a[:8, :8]))
    sampler = IdentityBalancedSampler(ds.pids, p=3, k=2, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=2)
    batches = list(loader)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert batch["image"].shape == (6, 8, 8, 3)
        assert len(set(batch["pid"].tolist())) == 3


# --- streaming ---------------------------------------------------------------


def _keys(stream) -> list[str]:
    return [s["key"] for s in stream]


def test_streaming_one_rank_reads_every_sample_once_in_a_new_order_each_epoch(small_shards):
    stream = StreamingDataset(small_shards, "train", decode=None, shuffle=16, seed=2)
    train = open_dataset(small_shards).rows("train")
    first = _keys(stream)
    assert len(first) == len(stream) == len(train) and len(set(first)) == len(first)
    assert _keys(stream) == first
    stream.set_epoch(1)
    second = _keys(stream)
    assert sorted(second) == sorted(first) and second != first


def test_streaming_ranks_get_equal_disjoint_shares_and_workers_split_them(small_shards):
    total = len(open_dataset(small_shards).rows("train"))
    seen = []
    for rank in (0, 1):
        stream = StreamingDataset(small_shards, "train", decode=None, rank=rank, world_size=2, seed=0)
        stream.set_epoch(3)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        keys = [s["key"] for s in loader]
        assert len(keys) == len(stream) == total // 2 and len(set(keys)) == len(keys)
        seen.append(set(keys))
    assert not seen[0] & seen[1]


def test_streaming_refuses_several_ranks_without_a_node_split(small_shards):
    with pytest.raises(ReidDataError, match="2 ranks without node_split would each read every sample"):
        StreamingDataset(small_shards, "train", node_split=False, rank=0, world_size=2)


def test_pk_batches_from_a_stream(small_shards):
    stream = StreamingDataset(small_shards, "train", decode=None, shuffle=32, seed=0)
    batches = list(pk_batches(stream, p=3, k=2, buffer=40))
    assert batches
    for batch in batches:
        counts = Counter(s["pid"] for s in batch)
        assert len(counts) == 3 and set(counts.values()) == {2}
        assert len({s["key"] for s in batch}) == 6


# --- interoperability ---------------------------------------------------------


def test_hf_export_has_typed_columns(converted, tmp_path):
    out = converted("market1501")
    hf = to_hf_dataset(out, "train", cache_dir=tmp_path / "hf")
    index = [r for r in pq.read_table(out / "index.parquet").to_pylist() if r["split"] == "train"]
    assert hf.num_rows == len(index)
    assert hf.features["gender"].names == ["male", "female"]
    assert hf.features["sid_lower"].dtype == "int32"
    row = hf[0]
    assert hf.features["gender"].int2str(row["gender"]) == index[0]["attributes"]["gender"]
    assert row["image"].size == (index[0]["width"], index[0]["height"])
    frames = to_hf_dataset(converted("mars"), "query", cache_dir=tmp_path / "hf2")
    first = frames[0]
    assert len(first["frames"]) == first["num_frames"] and first["frames"][0].size == (64, 128)


def test_datasets_webdataset_builder_reads_the_image_shards(converted, tmp_path):
    import datasets

    out = converted("market1501")
    files = sorted(str(p) for p in out.glob("train-*.tar"))
    hf = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path))
    index = [r for r in pq.read_table(out / "index.parquet").to_pylist() if r["split"] == "train"]
    assert hf.num_rows == len(index)
    assert sorted(r["json"]["pid"] for r in hf) == sorted(r["pid"] for r in index)
    assert hf[0]["jpg"].size == (64, 128)


def test_wids_reads_the_shards_by_its_index(converted):
    import wids

    out = converted("dukemtmc-reid")
    ds = wids.ShardListDataset(str(out / "query.wids.json"))
    index = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert len(ds) == sum(r["split"] == "query" for r in index.values())
    sample = ds[len(ds) - 1]
    meta = sample[".json"]  # wids decodes by extension: a dict and a PIL image
    assert meta["key"] == sample["__key__"] and meta["pid"] == index[meta["key"]]["pid"]
    assert sample[".jpg"].size == (index[meta["key"]]["width"], index[meta["key"]]["height"])

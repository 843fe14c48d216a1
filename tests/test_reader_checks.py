"""Readers never return wrong or short data silently; epochs reach workers; ranks lose nothing."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reiddata import ReidDataError, ShardDataset, convert, open_dataset, synth
from reiddata.manifest import shard_table
from reiddata.shard_format import content_version
from reiddata.stream import StreamingDataset


@pytest.fixture
def copy(converted, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(converted("market1501"), out)
    return out


def _stream_keys(ds) -> list[str]:
    return [s["key"] for s in ds]


def _readers(path: Path):
    """Both readers over the train split, opened before any damage is done."""
    return ShardDataset(path, "train", decode=None), StreamingDataset(path, "train", decode=None, shuffle=0)


def _read_all_map(ds: ShardDataset) -> None:
    for i in range(len(ds)):
        ds[i]


def test_a_truncated_shard_is_refused_on_open_and_by_readers_already_open(copy):
    mapped, stream = _readers(copy)
    shard = copy / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-3000])
    with pytest.raises(
        ReidDataError, match=r"train-000000.tar: \d+ bytes, the manifest says \d+: the shard is truncated"
    ):
        open_dataset(copy)
    with pytest.raises(ReidDataError, match="was replaced after the dataset"):
        _read_all_map(mapped)
    with pytest.raises(ReidDataError, match="was replaced after the dataset"):
        _stream_keys(stream)


def _damage_header(shard: Path, member: int) -> None:
    """Flip a byte of the name field of the ``member``-th tar header (size unchanged: open passes)."""
    data = bytearray(shard.read_bytes())
    pos, seen = 0, 0
    while seen < member:
        size = int(data[pos + 124 : pos + 136].split(b"\0", 1)[0], 8)
        pos += 512 + size + (-size % 512)
        seen += 1
    data[pos + 3] ^= 0x20
    shard.write_bytes(bytes(data))


def test_a_damaged_tar_header_is_an_error_under_both_readers(copy):
    _damage_header(copy / "train-000000.tar", member=5)  # sample 2's first member
    mapped, stream = _readers(copy)
    with pytest.raises(
        ReidDataError, match=r"train-000000.tar: dataset \w{16}: sample train_0000002: damaged tar header"
    ):
        _read_all_map(mapped)
    with pytest.raises(
        ReidDataError,
        match=r"train-000000.tar: dataset \w{16}: sample train_0000002, after 2 whole samples: damaged tar header",
    ):
        _stream_keys(stream)


def test_a_key_swap_in_a_resealed_index_is_caught_by_both_readers(copy):
    table = pq.read_table(copy / "index.parquet")
    for column in ("offset", "size"):  # rows 0 and 1 now point at each other's bytes
        values = table.column(column).to_pylist()
        values[0], values[1] = values[1], values[0]
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.int64()))
    pq.write_table(table, copy / "index.parquet")
    manifest = json.loads((copy / "manifest.json").read_text())
    hashes = {n: s["sha256"] for n, s in shard_table(manifest).items()}
    manifest["version"] = content_version(hashes, table, manifest["digests"])  # a consistent forgery
    (copy / "manifest.json").write_text(json.dumps(manifest))
    mapped, stream = _readers(copy)
    with pytest.raises(
        ReidDataError, match="holds member 'train_0000001.jpg' where the index places sample 'train_0000000'"
    ):
        mapped[0]
    with pytest.raises(
        ReidDataError, match="holds member 'train_0000000.jpg' where the index places sample 'train_0000001'"
    ):
        _stream_keys(stream)


def test_a_dataset_replaced_by_overwrite_while_open_is_an_error_never_the_other_version(synth_tree, tmp_path):
    out = tmp_path / "out"
    convert("market1501", synth_tree("market1501"), out, shard_size=40)
    mapped, stream = _readers(out)
    mapped[0]  # descriptors of the old version are open for shard 0 only
    other = synth("market1501", tmp_path / "other", identities=10, seed=3)
    convert("market1501", other, out, shard_size=40, overwrite=True)
    with pytest.raises(ReidDataError, match="was replaced after the dataset"):
        _read_all_map(mapped)
    with pytest.raises(ReidDataError, match="was replaced after the dataset"):
        _stream_keys(stream)


def _clips_by_key(loader) -> dict[str, list]:
    return {s["key"]: s["clips"] for s in loader}


def test_set_epoch_reaches_persistent_workers_for_map_style_and_streaming(converted):
    out = converted("g2a-vreid")
    ds = ShardDataset(out, "train", decode=None)
    persistent = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    stream = StreamingDataset(out, "train", decode=None, shuffle=8, seed=1)
    stream_loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        stream.set_epoch(epoch)
        got = _clips_by_key(persistent)
        fresh = _clips_by_key(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
        assert got == fresh == {ds[i]["key"]: ds[i]["clips"] for i in range(len(ds))}
        order = _stream_keys(stream_loader)
        assert order == _stream_keys(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))
        epochs.append((got, order))
    assert epochs[0][0] != epochs[1][0] != epochs[2][0]  # new clips every epoch
    assert epochs[0][1] != epochs[1][1]  # new stream order every epoch


@pytest.fixture(scope="module")
def market48(synth_tree, tmp_path_factory):
    """The embedded default's Market (48 identities): default shard size (one shard a split), and 7 per shard."""
    tree = synth_tree("market1501", identities=48)
    base = tmp_path_factory.mktemp("cover")
    paths = {size: base / str(size) for size in (5000, 7)}
    for size, path in paths.items():
        convert("market1501", tree, path, shard_size=size)
    return paths


@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize("shard_size", [5000, 7])
def test_ranks_read_equal_disjoint_shares_covering_95_percent(market48, world, shard_size):
    path = market48[shard_size]
    total = len(open_dataset(path).rows("train"))
    shares = []
    for rank in range(world):
        stream = StreamingDataset(path, "train", decode=None, rank=rank, world_size=world, seed=4)
        stream.set_epoch(2)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        shares.append(_stream_keys(loader))
    union = set().union(*map(set, shares))
    assert len({len(s) for s in shares}) == 1 and sum(map(len, shares)) == len(union)  # equal, disjoint
    assert len(union) / total >= 0.95


def test_a_configuration_covering_less_than_90_percent_warns(converted):
    with pytest.warns(UserWarning, match=r"8 ranks read \d+% of its \d+ samples"):
        StreamingDataset(converted("market1501"), "query", rank=0, world_size=8)


def test_hugging_face_datasets_keeps_gallery_attributes(converted, tmp_path):
    import datasets

    out = converted("market1501")
    gallery = datasets.load_dataset(str(out), split="gallery", cache_dir=str(tmp_path / "hf"))
    metas = gallery["json"]
    index = open_dataset(out).index.to_pylist()
    expected = [r["attributes"] for r in index if r["split"] == "gallery"]
    assert [m["attributes"] for m in metas] == expected
    assert metas[0]["pid"] == 0 and metas[0]["attributes"] is None  # a distractor first, then labelled rows
    assert sum(m["attributes"] is not None for m in metas) == sum(e is not None for e in expected) > 0
    assert isinstance(gallery.features["json"]["sid"]["upper"], datasets.Value)
    raw = json.loads(ShardDataset(out, "gallery", decode=None).raw(0)["json"])
    assert raw["attributes"] is None and raw["sid"] is None  # null, not {}


def test_every_split_has_a_data_files_entry_in_the_card(converted):
    card = (converted("market1501") / "README.md").read_text()
    for split in ("train", "query", "gallery"):
        assert f"- split: {split}\n    path: {split}-*.tar" in card
    assert Counter(line.strip() for line in card.splitlines())["dtype: image"] == 1

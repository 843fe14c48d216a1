"""The same dataset read locally, over HTTP and over S3 (real servers on 127.0.0.1), through the verified cache."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest
import torch
from servers import S3Server  # tests/servers.py

from reiddata import ReidDataError, ShardDataset, open_dataset
from reiddata.cli import main
from reiddata.stream import StreamingDataset
from reiddata.verify import verify


@pytest.fixture(scope="module")
def dataset(converted, tmp_path_factory):
    """A private copy of converted Market (3 splits, shards of 40) that the servers serve."""
    out = tmp_path_factory.mktemp("served") / "market"
    shutil.copytree(converted("market1501"), out)
    return out


@pytest.fixture(scope="module")
def s3(dataset):
    """The S3 server, its credentials in the environment, the dataset uploaded once: (server, url)."""
    server = S3Server()
    saved = {key: os.environ.get(key) for key in server.environment()}
    os.environ.update(server.environment())
    try:
        yield server, server.upload(dataset, "reid", "shards/market")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def _items(ds: ShardDataset) -> list[dict]:
    picks = [0, len(ds) // 2, len(ds) - 1]
    return [ds.raw(i) for i in picks]


def test_local_http_and_s3_give_the_same_dataset(dataset, http, s3, tmp_path):
    locations = {"local": str(dataset), "http": f"{http.url}/{dataset.name}", "s3": s3[1]}
    seen = {}
    for name, location in locations.items():
        ds = open_dataset(location, cache_dir=tmp_path / name)
        mapped = ShardDataset(ds, "gallery", decode=None)
        stream = StreamingDataset(ds, "train", decode=None, shuffle=0)
        seen[name] = (
            ds.version,
            {s: ds.manifest["splits"][s]["samples"] for s in ds.splits},
            _items(mapped),
            Counter(s["key"] for s in stream),
        )
    assert seen["http"] == seen["local"] == seen["s3"]


def test_the_cache_downloads_each_shard_once_per_node(dataset, http, tmp_path):
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    before = Counter(http.gets)
    train = ShardDataset(ds, "train", decode=None)
    for _ in range(2):  # two epochs, two workers each: still one download per shard
        loader = torch.utils.data.DataLoader(train, batch_size=None, num_workers=2)
        assert len([s["key"] for s in loader]) == len(train)
    got = Counter(http.gets) - before
    shards = [s["name"] for s in ds.split_shards("train")]
    assert {f"{dataset.name}/{name}": got[f"{dataset.name}/{name}"] for name in shards} == {
        f"{dataset.name}/{name}": 1 for name in shards
    }
    assert sorted(p.name for p in (tmp_path / "cache" / ds.version).glob("*.tar")) == sorted(shards)


def test_a_corrupted_shard_in_the_bucket_is_reported_not_served(dataset, s3, tmp_path):
    client = s3[0].client()
    client.create_bucket(Bucket="damaged")
    for file in dataset.iterdir():
        body = file.read_bytes()
        if file.name == "train-000000.tar":
            body = body[:1000] + bytes([body[1000] ^ 1]) + body[1001:]  # same size: only the hash can tell
        client.put_object(Bucket="damaged", Key=f"m/{file.name}", Body=body)
    ds = open_dataset("s3://damaged/m", cache_dir=tmp_path / "cache")
    train = ShardDataset(ds, "train", decode=None)
    with pytest.raises(ReidDataError, match=r"s3://damaged/m/train-000000.tar: the bytes in storage .* not served"):
        train[0]
    with pytest.raises(ReidDataError, match="not served"):
        next(iter(StreamingDataset(ds, "train", decode=None, shuffle=0)))
    assert not list((tmp_path / "cache").rglob("train-000000.tar"))
    assert any("sha256 differs" in p for p in verify("s3://damaged/m"))


def test_verify_and_stats_work_on_a_url(dataset, http, capsys):
    url = f"{http.url}/{dataset.name}"
    assert main(["verify", url]) == 0
    assert f"{url}: ok" in capsys.readouterr().out
    assert main(["stats", url]) == 0
    assert "protocol  match   queries" in capsys.readouterr().out


def test_streaming_from_storage_keeps_nothing_unless_asked(dataset, http, tmp_path):
    ds = open_dataset(f"{http.url}/{dataset.name}", cache_dir=tmp_path / "cache")
    shards = [s["name"] for s in ds.split_shards("train")]
    before = Counter(http.gets)
    keys = [s["key"] for s in StreamingDataset(ds, "train", decode=None, shuffle=0)]
    assert len(keys) == len(set(keys)) == ds.manifest["splits"]["train"]["samples"]
    assert not list((tmp_path / "cache").rglob("*.tar"))  # verified in a temporary file, then dropped
    assert all((Counter(http.gets) - before)[f"{dataset.name}/{name}"] == 1 for name in shards)
    kept = [s["key"] for s in StreamingDataset(ds, "train", decode=None, shuffle=0, cache=True)]
    assert kept == keys
    assert sorted(p.name for p in (tmp_path / "cache" / ds.version).glob("*.tar")) == sorted(shards)


def test_show_builds_the_same_page_from_a_url(dataset, http, tmp_path):
    """`reiddata show` of a served dataset: thumbnails from the shards (the node's verified
    cache), the same page data and sheets as from the local folder."""
    from reiddata.pages import show

    local = show(dataset, tmp_path / "local", workers=2)
    remote = show(f"{http.url}/{dataset.name}", tmp_path / "remote", workers=2, cache_dir=tmp_path / "cache")
    assert remote["thumbnails"] == local["thumbnails"] > 0 and remote["warnings"] == local["warnings"] == []
    for name in ["data.js", *sorted(p.name for p in (tmp_path / "local" / "thumbs").iterdir())]:
        sub = "" if name == "data.js" else "thumbs"
        assert (tmp_path / "remote" / sub / name).read_bytes() == (tmp_path / "local" / sub / name).read_bytes()

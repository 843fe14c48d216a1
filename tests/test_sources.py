"""Every registered source: synth -> convert gives exactly the tree's samples."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import pyarrow.parquet as pq
import pytest

from reiddata import SOURCES, ReidDataError, get_source
from reiddata.synthetic.layouts import LAYOUTS
from reiddata.verify import verify

CASES = [(name, None) for name in sorted(SOURCES)]
CASES += [("msmt17", "v2"), ("agreid-v2", "nested"), ("g2a-vreid", "v2")]


def test_every_source_has_a_synth_layout():
    assert set(LAYOUTS) == set(SOURCES)


def test_unknown_source_lists_the_valid_names():
    with pytest.raises(
        ReidDataError,
        match="expected one of agreid-v1, agreid-v2, cargo, dukemtmc-reid, g2a-vreid, market1501, mars, msmt17",
    ):
        get_source("market")


@pytest.mark.parametrize("source,variant", CASES)
def test_converted_counts_match_the_parsed_tree(source, variant, synth_tree, converted):
    spec = get_source(source)
    parsed = spec.parse(synth_tree(source, variant))
    out = converted(source, variant)
    manifest = json.loads((out / "manifest.json").read_text())
    index = pq.read_table(out / "index.parquet").to_pylist()

    expected = Counter(r.split for r in parsed.records)
    assert {s: manifest["splits"][s]["samples"] for s in spec.splits} == dict(expected)
    assert len(index) == sum(expected.values())
    assert manifest["split_order"] == list(spec.splits)
    # keys: split + ordinal over the sorted source paths, unique and dot-free
    for split in spec.splits:
        rows = [r for r in index if r["split"] == split]
        assert [r["key"] for r in rows] == [f"{split}_{i:07d}" for i in range(len(rows))]
        assert [r["source"] for r in rows] == sorted(r["source"] for r in rows)
    # train labels contiguous over train ids; -1 outside train identities
    train = [r for r in index if r["split"] == "train"]
    assert sorted({r["label"] for r in train}) == list(range(manifest["splits"]["train"]["ids"]))
    assert all(r["label"] == -1 for r in index if r["split"] in ("query", "gallery"))
    # every protocol's roles are the parsed ones, on query and gallery samples only
    protocols = parsed.protocols or spec.protocols  # a variant may have fewer (G2A-VReID v1)
    assert manifest["protocol_order"] == [p.name for p in protocols]
    assert set(manifest["protocols"]) == set(manifest["protocol_order"])
    for protocol in protocols:
        summary = manifest["protocols"][protocol.name]
        assert summary["match"] == protocol.match
        for role in ("query", "gallery"):
            members = [r for r in parsed.records if (protocol.name, role) in r.roles]
            joined = [r for r in parsed.records if (protocol.name, "query") in r.roles] if role == "gallery" else []
            # MARS as its authors evaluate it: the queries are gallery items too
            assert summary[role]["samples"] == len(members) + len(joined if protocol.query_in_gallery else []) > 0
            assert set(summary[role]["splits"]) <= {"query", "gallery"}
            assert sum(r["roles"][protocol.name] == role for r in index) == len(members)
            assert all(protocol.admits(role, r.view) for r in members)
    # the first protocol's roles are the query/gallery splits
    first = manifest["protocols"][protocols[0].name]
    gallery_splits = ["gallery", "query"] if protocols[0].query_in_gallery else ["gallery"]
    assert first["query"]["splits"] == ["query"] and first["gallery"]["splits"] == gallery_splits
    if len(protocols) == 1:  # one protocol: every query and gallery sample takes part
        assert first["query"]["samples"] == expected["query"]
    assert verify(out) == []


@pytest.mark.parametrize("source,variant", CASES)
def test_tar_members_are_sorted_deterministic_and_carry_the_index_metadata(source, variant, converted):
    out = converted(source, variant)
    index = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    shard = sorted(out.glob("train-*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
        key = names[0].split(".")[0]
        first = json.loads(tar.extractfile(f"{key}.json").read())
        own = [n for n in names if n.split(".")[0] == key]
        if "num_frames" in first:  # a tracklet: its frames in order, then its JSON
            assert own == [f"{key}.{i:04d}.jpg" for i in range(first["num_frames"])] + [f"{key}.json"]
            assert len(first["frames"]) == len(first["frame_sizes"]) == first["num_frames"]
        else:
            assert own == [f"{key}.jpg", f"{key}.json"]
        row = index[first["key"]]
        for field in ("pid", "pid_raw", "label", "camid", "view", "source", "width", "height"):
            assert first[field] == row[field]
        # the index byte range holds exactly this sample's members
        raw = shard.read_bytes()[row["offset"] : row["offset"] + row["size"]]
        assert raw[:512].startswith(names[0].encode())
        assert tar.extractfile(names[0]).read() in raw


def test_plain_webdataset_reads_every_sample_with_its_metadata(converted):
    import webdataset as wds

    out = converted("dukemtmc-reid")
    index = {r["key"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert sample["jpg"][:2] == b"\xff\xd8"
        seen[sample["__key__"]] = meta["pid"]
    assert seen == {k: r["pid"] for k, r in index.items()}

"""MSMT17: list-file splits, val as its own split, namespaced train/test pids."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import real_file

from reiddata import ReidDataError, convert
from reiddata.sources import msmt17


def test_train_and_test_labels_collide_but_pids_do_not(synth_tree, converted):
    tree = synth_tree("msmt17") / "MSMT17_V1"
    train_labels = {line.split()[1] for line in (tree / "list_train.txt").read_text().splitlines()}
    query_labels = {line.split()[1] for line in (tree / "list_query.txt").read_text().splitlines()}
    assert "0" in train_labels and "0" in query_labels  # the same number, different people
    index = pq.read_table(converted("msmt17") / "index.parquet").to_pylist()
    train_pids = {r["pid"] for r in index if r["split"] in ("train", "val")}
    test_pids = {r["pid"] for r in index if r["split"] in ("query", "gallery")}
    assert not train_pids & test_pids
    assert min(test_pids) == msmt17.TEST_PID_OFFSET
    assert {r["pid_raw"][:5] for r in index if r["split"] == "query"} == {"test/"}


def test_val_is_its_own_split_with_train_labels(converted):
    out = converted("msmt17")
    index = pq.read_table(out / "index.parquet").to_pylist()
    label_of = {r["pid"]: r["label"] for r in index if r["split"] == "train"}
    val = [r for r in index if r["split"] == "val"]
    assert val and all(r["label"] == label_of[r["pid"]] for r in val)
    assert all(r["roles"]["standard"] is None for r in val)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocols"]["standard"]["query"]["splits"] == ["query"]


def test_v2_folders_match_case_insensitively(synth_tree, tmp_path):
    import shutil

    tree = tmp_path / "MSMT17_V2"
    shutil.copytree(synth_tree("msmt17", "v2") / "MSMT17_V2", tree)
    (tree / "mask_train_v2").rename(tree / "mask_train_V2")
    parsed = msmt17.parse(tmp_path)
    assert parsed.variant == "MSMT17_V2"
    assert parsed.records[0].path.startswith("mask_train_V2/")


def test_label_disagreeing_with_its_folder_is_an_error(synth_tree, tmp_path):
    import shutil

    tree = tmp_path / "MSMT17_V1"
    shutil.copytree(synth_tree("msmt17") / "MSMT17_V1", tree)
    lines = (tree / "list_query.txt").read_text().splitlines()
    path, label = lines[0].split()
    lines[0] = f"{path} {int(label) + 1}"
    (tree / "list_query.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ReidDataError, match=r"list_query.txt:1: label \d+ disagrees with the pid folder"):
        convert("msmt17", tree, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.realdata
def test_real_v1_lists_convert_with_the_published_counts(tmp_path, synth_tree):
    """All 126,441 real list entries, each a (hard-linked) JPEG in the real V1 layout."""
    base = tmp_path / "MSMT17_V1"
    jpegs = sorted(synth_tree("msmt17").rglob("*.jpg"))[:8]  # ext4 allows 65,000 links per file
    for split, side in msmt17.LISTS:
        listing = real_file("msmt17_v1", f"list_{split}.txt")
        base.mkdir(exist_ok=True)
        (base / f"list_{split}.txt").write_bytes(listing.read_bytes())
        for i, line in enumerate(listing.read_text().splitlines()):
            target = base / side / line.split(" ")[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.hardlink_to(jpegs[i % len(jpegs)])
    out = tmp_path / "out"
    manifest = convert("msmt17", base, out, shard_size=20000, workers=2)
    counts = {s: (v["samples"], v["ids"]) for s, v in manifest["splits"].items()}
    assert counts == {
        "train": (30248, 1041),
        "val": (2373, 1041),
        "query": (11659, 3060),
        "gallery": (82161, 3060),
    }
    index = pq.read_table(out / "index.parquet", columns=["split", "pid", "label"]).to_pydict()
    train = {p for p, s in zip(index["pid"], index["split"]) if s == "train"}
    test = {p for p, s in zip(index["pid"], index["split"]) if s in ("query", "gallery")}
    assert not train & test
    assert sorted({label for label, s in zip(index["label"], index["split"]) if s == "train"}) == list(range(1041))
    assert manifest["protocols"]["standard"]["gallery"]["ids"] == 3060

"""stats: computed from index and manifest, with the figures a user looks for."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from reiddata.stats import dataset_stats, format_stats


def test_stats_counts_equal_the_index(converted):
    out = converted("market1501")
    stats = dataset_stats(out)
    index = pq.read_table(out / "index.parquet").to_pylist()
    for split in ("train", "query", "gallery"):
        rows = [r for r in index if r["split"] == split]
        assert stats["splits"][split]["samples"] == len(rows)
        assert stats["splits"][split]["ids"] == len({r["pid"] for r in rows})
    assert stats["sizes_by_view"]["ground"]["height"] == {"min": 128, "median": 128.0, "max": 128}
    train_rows = [r for r in index if r["split"] == "train"]
    gender = stats["attributes"]["values"]["train"]["gender"]
    assert gender == {
        v: sum(r["attributes"]["gender"] == v for r in train_rows) for v in ("female", "male") if v in gender
    }
    assert stats["attributes"]["without_attributes"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    for group in stats["attributes"]["sid_groups"].values():
        assert group["train"] <= group["num_sids"]
    lower = stats["attributes"]["sid_groups"]["lower"]
    test_sids = {r["sid"]["lower"] for r in index if r["split"] != "train" and r["sid"]}
    train_sids = {r["sid"]["lower"] for r in train_rows}
    assert lower["test_unseen_in_train"] == sorted(test_sids - train_sids)
    assert manifest["attributes"]["groups"][2]["num_sids"] == 11 * 2 * 2


def test_stats_without_attributes_says_so(converted):
    stats = dataset_stats(converted("msmt17"))
    assert stats["attributes"] is None
    assert "attributes: none" in format_stats(stats)
    assert list(stats["splits"]) == ["train", "val", "query", "gallery"]

"""Every byte of a dataset is hostile: names, versions, byte ranges, manifests, checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reiddata import ReidDataError, ShardDataset, open_dataset
from reiddata.cli import main
from reiddata.manifest import shard_table
from reiddata.shard_format import content_version, manifest_digests
from reiddata.stream import StreamingDataset
from reiddata.verify import verify


@pytest.fixture
def copy(converted, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(converted("market1501"), out)
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _write(out: Path, manifest: dict, *, reseal: bool = False) -> None:
    """Write an edited manifest; ``reseal``: recompute digests and version, as a forger (or a bug) would."""
    if reseal:
        manifest["digests"] = manifest_digests(manifest)
        hashes = {n: s["sha256"] for n, s in shard_table(manifest).items()}
        manifest["version"] = content_version(hashes, pq.read_table(out / "index.parquet"), manifest["digests"])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


@pytest.mark.parametrize(
    "name",
    ["pipe:touch {marker}", "../../outside-000000.tar", "/etc/passwd", "train-000000.tar; touch {marker}", "x.tar"],
)
def test_a_shard_name_that_is_not_split_NNNNNN_tar_is_refused_and_nothing_runs(copy, tmp_path, name, capsys):
    marker = tmp_path / "ran"
    manifest = _manifest(copy)
    manifest["splits"]["train"]["shards"][0]["name"] = name.format(marker=marker)
    _write(copy, manifest, reseal=True)
    with pytest.raises(ReidDataError, match=r"splits.train.shards\[0\].name .* is not train-NNNNNN.tar"):
        open_dataset(copy)
    assert main(["verify", str(copy)]) == 2
    assert main(["stats", str(copy)]) == 2
    assert "is not train-NNNNNN.tar" in capsys.readouterr().err
    assert not marker.exists()


def test_a_version_that_is_not_16_hex_digits_is_refused(copy):
    manifest = _manifest(copy)
    manifest["version"] = "../../etc"
    _write(copy, manifest)
    with pytest.raises(ReidDataError, match="version '../../etc' is not 16 hex digits"):
        open_dataset(copy)


def test_index_byte_ranges_outside_their_shard_are_refused(copy):
    table = pq.read_table(copy / "index.parquet")
    sizes = table.column("size").to_pylist()
    sizes[3] = 10**9
    pq.write_table(
        table.set_column(table.schema.get_field_index("size"), "size", pa.array(sizes)), copy / "index.parquet"
    )
    with pytest.raises(ReidDataError, match=r"row 3: bytes \d+\+1000000000 are not a sample's range inside"):
        open_dataset(copy)
    assert any("row 3" in p for p in verify(copy))


@pytest.mark.parametrize("column", ["offset", "shard", "key"])
def test_an_index_with_an_empty_placement_value_is_refused(copy, column):
    table = pq.read_table(copy / "index.parquet")
    values = table.column(column).to_pylist()
    values[2] = None
    field = table.schema.get_field_index(column)
    pq.write_table(
        table.set_column(field, column, pa.array(values, table.schema.field(column).type)), copy / "index.parquet"
    )
    with pytest.raises(ReidDataError, match=f"column '{column}' has empty values"):
        open_dataset(copy)


MANIFEST_EDITS = {
    "splits": lambda m: m["splits"]["train"].update(samples=m["splits"]["train"]["samples"] + 1),
    "protocols": lambda m: m["protocols"]["standard"].update(match="view"),
    "camera_views": lambda m: m["camera_views"].update({"1": "aerial"}),
    "attributes": lambda m: m["attributes"]["attributes"][0]["values"].reverse(),
    "dropped": lambda m: m["dropped"].update({"junk pid -1 in bounding_box_test/": 0}),
}


@pytest.mark.parametrize("field", sorted(MANIFEST_EDITS))
def test_editing_the_manifest_is_caught_by_verify_naming_the_field_and_refused_on_open(copy, field, capsys):
    manifest = _manifest(copy)
    MANIFEST_EDITS[field](manifest)
    _write(copy, manifest)
    assert main(["verify", str(copy)]) == 1
    assert f"manifest field '{field}' was changed after conversion" in capsys.readouterr().err
    with pytest.raises(ReidDataError, match=f"manifest field '{field}' was changed"):
        open_dataset(copy)


@pytest.mark.parametrize("field", ["splits", "protocols", "camera_views"])
def test_a_resealed_edit_of_a_stated_count_or_rule_is_still_named_by_verify(copy, field):
    """Someone who recomputes digests and version still cannot make the counts disagree with the index."""
    manifest = _manifest(copy)
    MANIFEST_EDITS[field](manifest)
    if field == "protocols":
        manifest["protocols"]["standard"]["query"]["samples"] += 1
    _write(copy, manifest, reseal=True)
    open_dataset(copy)  # self-consistent: opens
    problems = verify(copy)
    assert any(f"manifest {field}" in p for p in problems), problems


def test_an_edited_wids_list_is_caught_by_verify(copy):
    wids = json.loads((copy / "train.wids.json").read_text())
    wids["shardlist"][0]["nsamples"] += 1
    (copy / "train.wids.json").write_text(json.dumps(wids))
    assert verify(copy) == [f"{copy / 'train.wids.json'}: differs from the shard list of the manifest"]


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/reiddata-pickle-ran",))


def test_a_pickled_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from reidmodels.checkpoint import read_checkpoint

    Path("/tmp/reiddata-pickle-ran").unlink(missing_ok=True)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "config": _Boom()}, path)
    with pytest.raises(ValueError, match="refused: not a plain-data checkpoint"):
        read_checkpoint(path)
    assert not Path("/tmp/reiddata-pickle-ran").exists()


def test_streaming_opens_files_itself_never_through_url_handlers(copy):
    """A dataset folder named like a pipe: URL is still a folder: nothing is run."""
    odd = copy.parent / "pipe:touch ran"
    copy.rename(odd)
    keys = [s["key"] for s in StreamingDataset(odd, "train", decode=None, shuffle=0)]
    assert len(keys) == len(open_dataset(odd).rows("train"))
    assert not (copy.parent / "ran").exists()


def test_reader_sees_only_validated_shard_names(copy):
    ds = open_dataset(copy)
    with pytest.raises(ReidDataError, match="is not a shard of this dataset"):
        ds.shard_path("../manifest.json")
    assert ShardDataset(ds, "train", decode=None)[0]["key"] == "train_0000000"

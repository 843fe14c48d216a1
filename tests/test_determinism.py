"""Same input and options -> the same bytes and version; any change -> another version."""

from __future__ import annotations

import filecmp
import json
import shutil

from reiddata import convert, synth
from reiddata.verify import verify


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_same_input_gives_byte_identical_shards_whatever_the_workers(synth_tree, tmp_path):
    tree = synth_tree("market1501")
    a = convert("market1501", tree, tmp_path / "a", shard_size=30, workers=1)
    b = convert("market1501", tree, tmp_path / "b", shard_size=30, workers=2)
    assert a["version"] == b["version"]
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", _files(tmp_path / "a"), shallow=False)
    assert mismatch == [] and errors == []


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_is_deterministic(tmp_path):
    synth("dukemtmc-reid", tmp_path / "a", identities=6, seed=3)
    synth("dukemtmc-reid", tmp_path / "b", identities=6, seed=3)
    a = _tree_bytes(tmp_path / "a")
    assert a == _tree_bytes(tmp_path / "b")
    # scipy writes the creation time into a .mat header; ours is fixed text
    assert a["duke_attribute.mat"].startswith(b"MATLAB 5.0 MAT-file, written by reiddata  ")
    synth("dukemtmc-reid", tmp_path / "c", identities=6, seed=4)
    assert _tree_bytes(tmp_path / "c") != a
    va = convert("dukemtmc-reid", tmp_path / "a", tmp_path / "sa")["version"]
    vc = convert("dukemtmc-reid", tmp_path / "c", tmp_path / "sc")["version"]
    assert va != vc


def test_one_changed_image_changes_the_version(synth_tree, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(synth_tree("market1501"), tree)
    before = convert("market1501", tree, tmp_path / "a")["version"]
    victim = sorted((tree / "Market-1501-v15.09.15" / "query").glob("*.jpg"))[0]
    other = sorted((tree / "Market-1501-v15.09.15" / "query").glob("*.jpg"))[1]
    victim.write_bytes(other.read_bytes())
    after = convert("market1501", tree, tmp_path / "b")["version"]
    assert before != after
    assert convert("market1501", tree, tmp_path / "c")["version"] == after


def test_options_change_the_version_and_are_recorded(synth_tree, tmp_path):
    a = convert("market1501", synth_tree("market1501"), tmp_path / "a", shard_size=1000)
    b = convert("market1501", synth_tree("market1501"), tmp_path / "b", shard_size=10)
    assert a["version"] != b["version"]
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["options"]["shard_size"] == 10


def test_verify_catches_one_flipped_byte_and_names_the_shard(converted, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(converted("market1501"), out)
    assert verify(out) == []
    shard = out / "gallery-000000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = verify(out)
    assert problems == [f"{shard}: sha256 differs from the manifest (the shard was changed or damaged)"]


def test_verify_catches_an_edited_index(converted, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = tmp_path / "copy"
    shutil.copytree(converted("market1501"), out)
    table = pq.read_table(out / "index.parquet")
    labels = pc.add(table.column("label"), 1)
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels), out / "index.parquet")
    problems = verify(out)
    assert len(problems) == len(table)  # every row now disagrees with its shard's JSON
    assert problems[0] == f"{out / 'train-000000.tar'}: index row of train_0000000 differs from its " + (
        "train_0000000.json"
    )

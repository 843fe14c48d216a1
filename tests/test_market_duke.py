"""Market-1501 and DukeMTMC-reID: junk, distractors, attributes by field name, SIDs."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
import scipy.io
from conftest import real_file

from reiddata import convert
from reiddata.attributes import read_attribute_file
from reiddata.sources import dukemtmc, market1501


def test_market_drops_junk_and_keeps_0000_as_gallery_distractors(synth_tree, converted):
    tree = synth_tree("market1501") / "Market-1501-v15.09.15"
    junk = len(list((tree / "bounding_box_test").glob("-1_*.jpg")))
    zeros = len(list((tree / "bounding_box_test").glob("0000_*.jpg")))
    assert junk == zeros == 3  # 12 identities // 4
    out = converted("market1501")
    index = pq.read_table(out / "index.parquet").to_pylist()
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dropped"] == {"junk pid -1 in bounding_box_test/": 3}
    assert manifest["ignored"] == {"not a .jpg in bounding_box_test/": 1}  # Thumbs.db
    distractors = [r for r in index if r["pid_raw"] == "0000"]
    assert len(distractors) == 3
    assert {r["split"] for r in distractors} == {"gallery"}
    assert all(r["attributes"] is None and r["sid"] is None for r in distractors)
    assert all(r["pid"] == 0 and r["label"] == -1 for r in distractors)
    assert not any(r["pid_raw"] == "-1" for r in index)


@pytest.mark.parametrize("source,schema", [("market1501", market1501.SCHEMA), ("dukemtmc-reid", dukemtmc.SCHEMA)])
def test_every_image_gets_its_identitys_attribute_row(source, schema, synth_tree, converted):
    mat = synth_tree(source) / schema.filenames[0]
    table = read_attribute_file(mat, schema)
    index = pq.read_table(converted(source) / "index.parquet").to_pylist()
    for row in index:
        if row["attributes"] is None:
            continue
        part = "train" if row["split"] == "train" else "test"
        assert row["attributes"] == table.rows[part][row["pid_raw"]]
        assert row["sid"] == schema.sids(row["attributes"])


def test_attribute_file_with_a_missing_identity_fails_and_leaves_nothing(synth_tree, tmp_path):
    tree = tmp_path / "market"
    shutil.copytree(synth_tree("market1501"), tree)
    mat = tree / "market_attribute.mat"
    data = scipy.io.loadmat(mat)["market_attribute"]
    train = data[0, 0]["train"][0, 0]
    fields = {name: train[name][:, 1:] for name in train.dtype.names}  # drop the first identity
    test = data[0, 0]["test"][0, 0]
    scipy.io.savemat(mat, {"market_attribute": {"test": {n: test[n] for n in test.dtype.names}, "train": fields}})
    out = tmp_path / "out"
    with pytest.raises(Exception, match=r"has no row in the 'train' part"):
        convert("market1501", tree, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["market"]


def test_attribute_file_missing_a_field_names_it(synth_tree, tmp_path):
    mat = tmp_path / "market_attribute.mat"
    data = scipy.io.loadmat(synth_tree("market1501") / "market_attribute.mat")["market_attribute"]
    parts = {}
    for part in ("test", "train"):
        struct = data[0, 0][part][0, 0]
        parts[part] = {n: struct[n] for n in struct.dtype.names if n != "upgreen"}
    scipy.io.savemat(mat, {"market_attribute": parts})
    with pytest.raises(Exception, match=r"market_attribute.test lacks the fields \['upgreen'\]"):
        read_attribute_file(mat, market1501.SCHEMA)


# --- real APR files ---------------------------------------------------------------


@pytest.mark.realdata
def test_real_market_attributes_decode_with_explicit_none():
    table = read_attribute_file(real_file("market1501", "market_attribute.mat"), market1501.SCHEMA)
    assert len(table.rows["train"]) == 751 and len(table.rows["test"]) == 750
    assert "0000" not in table.rows["test"]
    assert table.anomalies == {
        "train: upcolor: no value marked -> none": 78,
        "test: upcolor: no value marked -> none": 69,
        "train: downcolor: no value marked -> none": 30,
        "test: downcolor: no value marked -> none": 44,
    }


@pytest.mark.realdata
def test_real_duke_top_zero_is_unknown_and_multi_colours_are_explicit():
    table = read_attribute_file(real_file("dukemtmc-reid", "duke_attribute.mat"), dukemtmc.SCHEMA)
    assert len(table.rows["train"]) == 702 and len(table.rows["test"]) == 1110
    unknown = sorted(k for k, v in table.rows["train"].items() if v["top"] == "unknown")
    assert unknown == ["0370", "0679"]
    assert table.anomalies["test: downcolor: several values marked -> multi"] == 23


def _sid_sets(table, schema, group):
    return [{schema.sids(v)[group] for v in table.rows[p].values()} for p in ("train", "test")]


@pytest.mark.realdata
def test_real_sid_facts():
    market = read_attribute_file(real_file("market1501", "market_attribute.mat"), market1501.SCHEMA)
    duke = read_attribute_file(real_file("dukemtmc-reid", "duke_attribute.mat"), dukemtmc.SCHEMA)
    for table, schema in ((market, market1501.SCHEMA), (duke, dukemtmc.SCHEMA)):
        train, test = _sid_sets(table, schema, "carrying")
        assert len(train | test) == 4  # backpack/bag/handbag never co-occur: 4 of 8 SIDs
    train, test = _sid_sets(market, market1501.SCHEMA, "upper")
    assert len(test - train) == 2
    # Duke lower: 16 test-only combinations of the raw yes/no fields (the published
    # figure); with the 23 multi-colour ids collapsed into `multi`, 9 SIDs remain.
    train, test = _sid_sets(duke, dukemtmc.SCHEMA, "lower")
    assert len(test - train) == 9
    mat = scipy.io.loadmat(real_file("dukemtmc-reid", "duke_attribute.mat"))["duke_attribute"][0, 0]
    fields = [f for f in dukemtmc.SCHEMA.attribute("downcolor").fields] + ["shoes", "boots"]
    raw = [
        {tuple(int(mat[p][0, 0][f][0, i]) for f in fields) for i in range(mat[p][0, 0]["gender"].shape[1])}
        for p in ("train", "test")
    ]
    assert len(raw[1] - raw[0]) == 16


def _real_layout(root, folders, names_by_folder, jpeg):
    for folder, names in names_by_folder.items():
        (root / folders[folder]).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folders[folder] / name).hardlink_to(jpeg)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "source,schema,mat,name",
    [
        ("market1501", market1501.SCHEMA, ("market1501", "market_attribute.mat"), "{pid}_c{cam}s1_{n:06d}_01.jpg"),
        ("dukemtmc-reid", dukemtmc.SCHEMA, ("dukemtmc-reid", "duke_attribute.mat"), "{pid}_c{cam}_f{n:07d}.jpg"),
    ],
)
def test_real_attribute_files_join_every_image_by_field_name(source, schema, mat, name, tmp_path, synth_tree):
    """Images of every real identity in the real layout; each gets its row, read by name."""
    real = real_file(*mat)
    raw = scipy.io.loadmat(real)[schema.top_key][0, 0]
    jpeg = next((synth_tree(source)).rglob("*.jpg"))
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    ids = {p: [str(x[0]) for x in raw[p][0, 0]["image_index"][0]] for p in ("train", "test")}
    names = {
        "train": [name.format(pid=p, cam=1, n=i) for i, p in enumerate(ids["train"])],
        "query": [name.format(pid=p, cam=1, n=i) for i, p in enumerate(ids["test"])],
        "gallery": [name.format(pid=p, cam=2, n=i) for i, p in enumerate(ids["test"])],
    }
    _real_layout(tmp_path / "tree", folders, names, jpeg)
    out = tmp_path / "out"
    convert(source, tmp_path / "tree", out, attributes=real, shard_size=1000)
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert len(index) == len(ids["train"]) + 2 * len(ids["test"])
    columns = {p: {f: raw[p][0, 0][f][0] for f in raw[p][0, 0].dtype.names} for p in ("train", "test")}
    position = {p: {pid: i for i, pid in enumerate(ids[p])} for p in ids}
    for row in index:
        part = "train" if row["split"] == "train" else "test"
        i = position[part][row["pid_raw"]]
        for attribute in schema.attributes:
            codes = [int(columns[part][f][i]) for f in attribute.fields]
            assert row["attributes"][attribute.name] == attribute.decode(codes)[0]
        gender = ("male", "female")[int(columns[part]["gender"][i]) - 1]
        assert row["attributes"]["gender"] == gender

"""AG-ReID.v1, AG-ReID.v2 and CARGO: identities, protocols, views, attributes, bad input.

Expected protocol counts are taken from the synthetic tree on disk (folders, list
files, names), independently of the parsers under test.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import scipy.io

from reiddata import ReidDataError, convert
from reiddata.attributes import read_attribute_file
from reiddata.sources import _agreid_common as agreid
from reiddata.sources import agreid_v2
from reiddata.stats import dataset_stats, format_stats

NAME = re.compile(r"^P(\d{4})T(\d{5})A(\d)C(\d)F\d+\.jpg$")


def _load(out: Path) -> tuple[dict, list[dict]]:
    return json.loads((out / "manifest.json").read_text()), pq.read_table(out / "index.parquet").to_pylist()


def _identities(paths) -> set[str]:
    return {"P{}T{}A{}".format(*NAME.match(Path(p).name).groups()[:3]) for p in paths}


def _copy(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "tree"
    shutil.copytree(tree, dest)
    return dest


def _fails_cleanly(source: str, tree: Path, tmp_path: Path, message: str) -> None:
    with pytest.raises(ReidDataError, match=message):
        convert(source, tree, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]  # no output, no temp folder


# --- AG-ReID.v1 -------------------------------------------------------------


def test_agreid_v1_protocols_are_its_folders(synth_tree, converted):
    tree = synth_tree("agreid-v1")
    manifest, index = _load(converted("agreid-v1"))
    folders = {f: sorted((tree / f).glob("*.jpg")) for f in ("query_all_c0", "query_all_c3")}
    folders |= {f: sorted((tree / f).glob("*.jpg")) for f in ("bounding_box_test_all_c0", "bounding_box_test_all_c3")}
    expected = {
        "a2g": ("query_all_c0", "bounding_box_test_all_c3", "aerial", "ground"),
        "g2a": ("query_all_c3", "bounding_box_test_all_c0", "ground", "aerial"),
    }
    for name, (query, gallery, query_view, gallery_view) in expected.items():
        protocol = manifest["protocols"][name]
        assert protocol["match"] == "camera"
        assert protocol["query"]["samples"] == len(folders[query]) > 0
        assert protocol["query"]["ids"] == len(_identities(folders[query]))
        assert protocol["gallery"]["samples"] == len(folders[gallery]) > 0
        assert protocol["gallery"]["ids"] == len(_identities(folders[gallery]))
        assert protocol["query"]["views"] == {query_view: len(folders[query])}
        assert protocol["gallery"]["views"] == {gallery_view: len(folders[gallery])}
        rows = [r for r in index if r["roles"][name] == "query"]
        assert {r["source"].split("/")[0] for r in rows} == {query}
    assert manifest["camera_views"] == {"0": "aerial", "3": "ground"}
    # every test image takes part in exactly one protocol
    assert all(sum(v is not None for v in r["roles"].values()) == (r["split"] != "train") for r in index)


def test_agreid_identity_is_p_t_a_never_p_alone(synth_tree, converted):
    for source in ("agreid-v1", "agreid-v2"):
        tree = synth_tree(source)
        _, index = _load(converted(source))
        names = [p.name for p in sorted(tree.rglob("*.jpg"))]
        people = _identities(names)
        # the synthetic world reuses P across T and A, as the real data does
        assert len({i[:5] for i in people}) < len(people)
        assert {r["pid_raw"] for r in index} == people
        assert len({r["pid"] for r in index}) == len(people)
        train = [r for r in index if r["split"] == "train"]
        by_p = defaultdict(set)
        for r in train:
            by_p[r["pid_raw"][:5]].add((r["pid_raw"], r["label"]))
        shared = [v for v in by_p.values() if len(v) > 1]
        assert shared, "two train people share P"
        for group in shared:  # same P, different T or A: different labels
            assert len({label for _, label in group}) == len(group)
        row = next(r for r in index if r["pid_raw"] == "P0000" + r["pid_raw"][5:])  # P0000 is a real person
        assert row["pid"] == int(row["pid_raw"][1:5] + row["pid_raw"][6:11] + row["pid_raw"][12])


def test_agreid_v1_rejects_a_stray_c2(synth_tree, tmp_path):
    tree = _copy(synth_tree("agreid-v1"), tmp_path)
    folder = tree / "bounding_box_train"
    first = sorted(folder.glob("*.jpg"))[0]
    stray = folder / first.name.replace("C0F", "C2F").replace("C3F", "C2F")
    shutil.copy(first, stray)
    _fails_cleanly("agreid-v1", tree, tmp_path, rf"{stray.name}: unexpected camera 2: agreid-v1 has cameras \[0, 3\]")


@pytest.mark.parametrize("bad", ["P01T04041A0C0F31.jpg", "P0001T0404A0C0F31.jpg", "P0001T04041A0C0.jpg", "x.jpg"])
def test_agreid_v1_rejects_a_malformed_name(synth_tree, tmp_path, bad):
    tree = _copy(synth_tree("agreid-v1"), tmp_path)
    folder = tree / "query_all_c0"
    shutil.copy(sorted(folder.glob("*.jpg"))[0], folder / bad)
    _fails_cleanly("agreid-v1", tree, tmp_path, rf"{re.escape(bad)}: name does not follow the agreid-v1 pattern")


def test_agreid_v1_rejects_an_image_in_the_other_cameras_folder(synth_tree, tmp_path):
    tree = _copy(synth_tree("agreid-v1"), tmp_path)
    ground = sorted((tree / "query_all_c3").glob("*.jpg"))[0]
    shutil.move(ground, tree / "query_all_c0" / ground.name)
    _fails_cleanly("agreid-v1", tree, tmp_path, r"camera C3 in query_all_c0/, which holds only C0 images")


# --- AG-ReID.v2 -------------------------------------------------------------


def _list_entries(tree: Path) -> dict[str, dict[str, list[str]]]:
    out = {}
    for protocol, filename in agreid_v2.LISTS.items():
        lines = [line.strip() for line in (tree / filename).read_text().splitlines() if line.strip()]
        out[protocol] = {role: [x for x in lines if x.startswith(role + "/")] for role in ("query", "gallery")}
    return out


def test_agreid_v2_protocols_come_from_the_overlapping_lists(synth_tree, converted):
    tree = synth_tree("agreid-v2")
    manifest, index = _load(converted("agreid-v2"))
    entries = _list_entries(tree)
    by_source = {r["source"]: r for r in index}
    views = {"a2c": ("aerial", "ground"), "a2w": ("aerial", "wearable"), "c2a": ("ground", "aerial")}
    views["w2a"] = ("wearable", "aerial")
    for protocol, sides in entries.items():
        for role, view in zip(("query", "gallery"), views[protocol]):
            summary = manifest["protocols"][protocol][role]
            assert summary["samples"] == len(sides[role]) > 0
            assert summary["ids"] == len(_identities(sides[role]))
            assert summary["views"] == {view: len(sides[role])}
            assert all(by_source[e]["roles"][protocol] == role for e in sides[role])
        listed = set(sides["query"]) | set(sides["gallery"])
        assert sum(r["roles"][protocol] is not None for r in index) == len(listed)
    # an aerial query of both A->C and A->W keeps both roles
    both = set(entries["a2c"]["query"]) & set(entries["a2w"]["query"])
    assert both
    for entry in both:
        assert by_source[entry]["roles"] == {"a2c": "query", "a2w": "query", "c2a": None, "w2a": None}
    assert sum(manifest["protocols"][p]["query"]["samples"] for p in entries) > manifest["splits"]["query"]["samples"]
    assert manifest["camera_views"] == {"0": "aerial", "2": "wearable", "3": "ground"}


def test_agreid_v2_nested_tree_gives_the_same_dataset(synth_tree, converted):
    nested = synth_tree("agreid-v2", "nested")
    assert not (nested / "train_all").exists() and (nested / "AG-ReID.v2" / "train_all").is_dir()
    assert (nested / "exp1_aerial_to_cctv.txt").is_file() and (nested / "qut_attribute_v8.mat").is_file()
    flat, _ = _load(converted("agreid-v2"))
    deep, _ = _load(converted("agreid-v2", "nested"))
    assert deep["attribute_status"] == "labelled: qut_attribute_v8.mat"
    assert deep["version"] == flat["version"]


def test_agreid_v2_lists_with_crlf_endings_give_the_same_dataset(synth_tree, converted, tmp_path):
    tree = _copy(synth_tree("agreid-v2"), tmp_path)
    for filename in agreid_v2.LISTS.values():
        lst = tree / filename
        lst.write_text(lst.read_text().replace("\n", "\r\n") + "\r\n")
    manifest = convert("agreid-v2", tree, tmp_path / "out", shard_size=40)  # options are part of the version
    assert manifest["version"] == _load(converted("agreid-v2"))[0]["version"]


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda lines: [lines[0], lines[1].replace("F", "F9", 1)], r":2: lists query/\S+F9\S+, which is not in"),
        (lambda lines: [lines[0], lines[0]], r":2: query/\S+ is listed again \(first on line 1\)"),
        (lambda lines: ["train_all/" + lines[0].split("/", 1)[1]], r":1: entry 'train_all/\S+' is neither under"),
    ],
)
def test_agreid_v2_list_lines_must_name_the_trees_test_images(synth_tree, tmp_path, damage, message):
    tree = _copy(synth_tree("agreid-v2"), tmp_path)
    lst = tree / "exp4_cctv_to_aerial.txt"
    lst.write_text("\n".join(damage(lst.read_text().splitlines())) + "\n")
    _fails_cleanly("agreid-v2", tree, tmp_path, "exp4_cctv_to_aerial.txt" + message)


def test_agreid_v2_list_with_a_query_of_the_wrong_view(synth_tree, tmp_path):
    tree = _copy(synth_tree("agreid-v2"), tmp_path)
    wearable = _list_entries(tree)["w2a"]["query"][0]
    with open(tree / "exp1_aerial_to_cctv.txt", "a") as f:
        f.write(wearable + "\n")
    _fails_cleanly("agreid-v2", tree, tmp_path, r"is a wearable image; a2c query holds")


def test_agreid_v2_missing_list_and_misfiled_image(synth_tree, tmp_path):
    tree = _copy(synth_tree("agreid-v2"), tmp_path)
    (tree / "exp2_aerial_to_wearable.txt").unlink()
    _fails_cleanly("agreid-v2", tree, tmp_path, r"exp2_aerial_to_wearable.txt: protocol list missing")
    shutil.rmtree(tree)
    tree = _copy(synth_tree("agreid-v2"), tmp_path)
    folders = sorted(p for p in (tree / "gallery").iterdir())
    image = sorted(folders[0].glob("*.jpg"))[0]
    shutil.move(image, folders[1] / image.name)
    _fails_cleanly(
        "agreid-v2", tree, tmp_path, rf"identity {folders[0].name} filed under the folder of {folders[1].name}"
    )


# --- QUT attributes ---------------------------------------------------------


def test_qut_attributes_decode_by_field_name_with_unknown_fallback(synth_tree, converted):
    tree = synth_tree("agreid-v1")
    mat = tree / "qut_attribute_v4_88_attributes.mat"
    struct = scipy.io.loadmat(str(mat))["qut_attribute"][0, 0]
    train_fields = [f for f in struct["train"].dtype.names if f != "image_index"]
    test_fields = [f for f in struct["test"].dtype.names if f != "image_index"]
    assert len(train_fields) == 88 and train_fields != test_fields  # the parts order fields differently
    assert set(train_fields) == set(agreid.SCHEMA.fields)
    assert len(agreid.SCHEMA.attribute("age").values) == 4
    table = read_attribute_file(mat, agreid.SCHEMA_V1)
    # the identity written with no glasses marked decodes to unknown; two bags keep the first
    assert table.anomalies == {
        "train: glasses: no value marked -> unknown": 1,
        "test: bag: several values marked -> backpack": 1,
    }
    column = struct["train"][0, 0]
    ids = [str(x[0]) for x in column["image_index"].ravel()]
    blank = min(ids)
    i = ids.index(blank)
    assert [int(column[f].ravel()[i]) for f in agreid.SCHEMA.attribute("glasses").fields] == [1, 1, 1, 1]
    assert table.rows["train"][blank]["glasses"] == "unknown"
    manifest, index = _load(converted("agreid-v1"))
    assert manifest["anomalies"] == {k: v for k, v in table.anomalies.items()}
    for row in index:
        part = "train" if row["split"] == "train" else "test"
        digits = row["pid_raw"][1:5] + row["pid_raw"][6:11] + row["pid_raw"][12]
        assert row["attributes"] == table.rows[part][digits]
        assert row["sid"] == agreid.SCHEMA.sids(row["attributes"])
    groups = {g["name"]: (g["attributes"], g["num_sids"]) for g in manifest["attributes"]["groups"]}
    assert groups == {
        "identity": (["gender", "age", "height", "weight", "ethnic"], 3 * 4 * 5 * 4 * 5),
        "head": (["haircolor", "hairstyle", "beard", "moustache", "glasses", "head"], 7 * 6 * 3 * 3 * 4 * 5),
        "upper": (["upper"], 13),
        "lower": (["lower", "feet"], 10 * 7),
        "carrying": (["bag"], 9),
    }


# --- CARGO ------------------------------------------------------------------


def test_cargo_protocols_filter_views_and_a2g_matches_by_view(synth_tree, converted):
    tree = synth_tree("cargo") / "CARGO"
    manifest, index = _load(converted("cargo"))

    def count(split: str, cams: range) -> list[Path]:
        return [p for c in cams for p in sorted((tree / split / f"Cam{c}").glob("*.jpg"))]

    aerial, ground, every = range(1, 6), range(6, 14), range(1, 14)
    expected = {"all": (every, every, "camera"), "a2a": (aerial, aerial, "camera")}
    expected |= {"g2g": (ground, ground, "camera"), "a2g": (every, every, "view")}
    for name, (query_cams, gallery_cams, match) in expected.items():
        protocol = manifest["protocols"][name]
        assert protocol["match"] == match
        queries, gallery = count("query", query_cams), count("gallery", gallery_cams)
        assert protocol["query"]["samples"] == len(queries) > 0
        assert protocol["gallery"]["samples"] == len(gallery) > 0
        assert protocol["query"]["ids"] == len({p.name.split("_")[2] for p in queries})
    assert manifest["protocol_order"] == ["all", "a2a", "g2g", "a2g"]
    assert {r["view"] for r in index if 1 <= r["camid"] <= 5} == {"aerial"}
    assert {r["view"] for r in index if r["camid"] >= 6} == {"ground"}
    assert manifest["attributes"] is None
    assert manifest["attribute_status"] == "none: cargo has no attribute labels"
    assert "attributes" not in index[0]
    assert "attributes: none: cargo has no attribute labels" in format_stats(dataset_stats(converted("cargo")))


def test_cargo_rejects_a_name_filed_under_another_camera(synth_tree, tmp_path):
    tree = _copy(synth_tree("cargo"), tmp_path)
    image = sorted((tree / "CARGO" / "train").rglob("Cam1_*.jpg"))[0]
    shutil.copy(image, tree / "CARGO" / "train" / "Cam7" / image.name)
    _fails_cleanly("cargo", tree, tmp_path, r"camera 1 in its name but filed under Cam7/")


# --- stats ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["agreid-v1", "agreid-v2", "cargo"])
def test_stats_per_view_and_protocol(source, converted):
    stats = dataset_stats(converted(source))
    sizes = stats["sizes_by_view"]
    assert sizes["aerial"]["height"]["median"] < sizes["ground"]["height"]["median"]  # UAV crops are small
    text = format_stats(stats)
    for name, protocol in stats["protocols"].items():
        views = " ".join(f"{k}:{v}" for k, v in protocol["query"]["views"].items())
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        assert f" {protocol['query']['samples']} " in line and views in line
    if stats["attributes"] is not None:
        by_view = stats["attributes"]["values_by_view"]
        assert set(by_view) == set(sizes)
        for view, values in by_view.items():
            assert sum(values["gender"].values()) == sizes[view]["samples"]

"""Your own data: ``convert table`` and ``convert folder``, their rules, and equality with a built-in source."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import cpu_train_config

from reiddata import ReidDataError, convert, open_dataset, synth
from reiddata.cli import main
from reiddata.custom import folder_source, table_source
from reiddata.verify import verify
from reidmodels.engine import train

TINY = {"p": 2, "k": 2, "stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}}
MARKET_PATTERN = r"(?P<pid>-1|\d{4})_c(?P<camid>\d)s\d_\d{6}_\d{2}\.jpg"
MARKET_SPLITS = ["train=bounding_box_train", "query=query", "gallery=bounding_box_test"]


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """The synthetic Market-1501 tree (the folder holding bounding_box_train/, query/, ...)."""
    tree = synth("market1501", tmp_path_factory.mktemp("market") / "tree", identities=12)
    return tree / "Market-1501-v15.09.15"


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def crops(tmp_path, market) -> Path:
    """A folder of 10 crops and a ten-line CSV: 3 train ids, 2 test ids, 2 cameras."""
    root = tmp_path / "crops"
    (root / "img").mkdir(parents=True)
    files = sorted((market / "bounding_box_train").glob("*.jpg"))[:10]
    rows = []
    for n, f in enumerate(files):
        (root / "img" / f"{n:02d}.jpg").write_bytes(f.read_bytes())
        split = "train" if n < 6 else ("query" if n % 2 == 0 else "gallery")
        pid = n // 2 if n < 6 else 10 + (n - 6) // 2
        cam = 1 + n % 2
        rows.append({"path": f"img/{n:02d}.jpg", "pid": pid, "camid": cam, "split": split, "gender": "female"})
    _write_csv(root / "labels.csv", rows)
    return root


def _samples(path: Path) -> list[tuple]:
    index = pq.read_table(path / "index.parquet")
    return sorted(zip(*(index.column(c).to_pylist() for c in ("split", "source", "pid", "camid", "view", "label"))))


def _protocol(path: Path, name: str) -> tuple[list, list]:
    ds = open_dataset(path)
    sources = ds.index.column("source").to_pylist()
    spec = ds.protocols[name]
    return sorted(sources[i] for i in spec.query), sorted(sources[i] for i in spec.gallery)


def test_a_folder_of_crops_and_a_ten_line_csv_become_a_dataset(crops, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["convert", "table", str(crops / "labels.csv"), str(out), "--quiet"]) == 0
    ds = open_dataset(out)
    assert ds.manifest["source"] == "labels" and ds.splits == ("train", "query", "gallery")
    assert [ds.manifest["splits"][s]["samples"] for s in ds.splits] == [6, 2, 2]
    assert ds.manifest["protocols"]["standard"]["match"] == "camera"
    # "gender" is not named by a spec: counted, left out
    assert ds.manifest["ignored"] == {"column 'gender' (not a reiddata column or a spec attribute)": 10}
    assert verify(out) == []
    assert main(["stats", str(out)]) == 0
    assert main(["show", str(out), "--out", str(tmp_path / "page"), "--quiet"]) == 0
    run = train(cpu_train_config(out, tmp_path / "run", hparams=TINY))
    assert run["batches"] > 0 and (tmp_path / "run" / "checkpoint.pt").is_file()
    labels = ds.index.column("label").to_pylist()
    assert labels[:6] == [0, 0, 1, 1, 2, 2] and set(labels[6:]) == {-1}
    # same input, same bytes and version
    again = tmp_path / "again"
    assert main(["convert", "table", str(crops / "labels.csv"), str(again), "--quiet"]) == 0
    assert open_dataset(again).version == ds.version
    assert (again / "train-000000.tar").read_bytes() == (out / "train-000000.tar").read_bytes()


def test_a_spec_names_attributes_views_and_protocols(crops, tmp_path):
    (crops / "labels.yaml").write_text(
        "name: campus\nviews: {1: ground, 2: aerial}\nattributes: {gender: [male, female]}\n"
        "protocols:\n  g2a: {query: query, gallery: gallery, match: view}\n"
    )
    out = tmp_path / "data"
    source, root = table_source(crops / "labels.csv")
    manifest = convert(source, root, out)
    assert manifest["source"] == "campus" and manifest["protocol_order"] == ["g2a"]
    assert manifest["camera_views"] == {"1": "ground", "2": "aerial"}
    assert manifest["attributes"]["attributes"] == [{"name": "gender", "values": ["male", "female"]}]
    ds = open_dataset(out)
    assert set(ds.index.column("attributes").to_pylist()[0].values()) == {"female"}
    assert ds.index.column("sid").to_pylist()[0] == {"gender": 1}
    assert verify(out) == []


def test_parquet_and_jsonl_tables_give_the_same_dataset(crops, tmp_path):
    rows = list(csv.DictReader((crops / "labels.csv").open()))
    typed = [dict(r, pid=int(r["pid"]), camid=int(r["camid"])) for r in rows]
    pq.write_table(pa.Table.from_pylist(typed), crops / "labels.parquet")
    (crops / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in typed))
    versions = set()
    for name in ("labels.csv", "labels.parquet", "labels.jsonl"):
        out = tmp_path / name.replace(".", "-")
        source, root = table_source(crops / name)
        versions.add(convert(source, root, out)["version"])
    assert len(versions) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"path": "../outside.jpg"}, r"row 3, column 'path': '\.\./outside\.jpg' leaves the root"),
        ({"path": "/etc/passwd"}, r"row 3, column 'path': '/etc/passwd' leaves the root"),
        ({"path": "img/link.jpg"}, r"row 3, column 'path': 'img/link\.jpg' is a link out of the root"),
        ({"path": "img/00.jpg"}, r"row 3, column 'path': 'img/00\.jpg' repeats row 1"),
        ({"path": "img/missing.jpg"}, r"row 3, column 'path': 'img/missing\.jpg' is not a file"),
        ({"pid": "7.5"}, r"row 3, column 'pid': '7\.5' is not an integer"),
        ({"camid": "c1"}, r"row 3, column 'camid': 'c1' is not an integer"),
        ({"split": "val"}, r"row 3, column 'split': 'val' is not a split the spec names"),
        ({"tracklet": "t1", "frame": "0"}, r"row 3: image rows and tracklet rows are mixed"),
        ({"view": "aerial"}, r"row 3, column 'view': camera 1 is 'aerial' here and 'ground' in row 1"),
        ({"pid": "-3"}, r"row 3, column 'pid': -3 is below 0"),
    ],
)
def test_hostile_tables_are_refused_naming_the_row(crops, tmp_path, capsys, edit, message):
    (crops / "img" / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (tmp_path / "elsewhere.jpg").write_bytes((crops / "img" / "00.jpg").read_bytes())
    (crops / "labels.yaml").write_text("splits: [train, query, gallery]\n")
    rows = list(csv.DictReader((crops / "labels.csv").open()))
    extra = [k for k in edit if k not in rows[0]]
    rows = [dict(r, **dict.fromkeys(extra, "")) for r in rows]
    rows[2].update(edit)
    _write_csv(crops / "labels.csv", rows)
    out = tmp_path / "data"
    assert main(["convert", "table", str(crops / "labels.csv"), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "labels.csv" in err and __import__("re").search(message, err), err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_convert_folder_and_convert_table_equal_convert_market1501(market, tmp_path):
    builtin = tmp_path / "builtin"
    convert("market1501", market, builtin, shard_size=40)
    folder = tmp_path / "folder"
    args = ["convert", "folder", str(market), str(folder), "--pattern", MARKET_PATTERN, "--drop-pid", "-1", "--quiet"]
    assert main([*args, *[a for s in MARKET_SPLITS for a in ("--split", s)], "--shard-size", "40"]) == 0
    # a table written from the built-in dataset's index
    index = pq.read_table(builtin / "index.parquet").to_pylist()
    rows = [{"path": r["source"], "pid": r["pid"], "camid": r["camid"], "split": r["split"]} for r in index]
    _write_csv(market / "table.csv", rows)
    table = tmp_path / "table"
    assert main(["convert", "table", str(market / "table.csv"), str(table), "--shard-size", "40", "--quiet"]) == 0
    (market / "table.csv").unlink()
    expected = _samples(builtin)
    assert _samples(folder) == expected and _samples(table) == expected
    for out in (folder, table):
        assert _protocol(out, "standard") == _protocol(builtin, "standard")
        ds = open_dataset(out)
        assert ds.splits == ("train", "query", "gallery")
        assert verify(out) == []
    # the same bytes where the metadata agrees: keys and image members
    ours = open_dataset(folder).index.column("key").to_pylist()
    assert ours == open_dataset(builtin).index.column("key").to_pylist()
    junk = open_dataset(builtin).manifest["dropped"]["junk pid -1 in bounding_box_test/"]
    assert open_dataset(folder).manifest["dropped"] == {"pid -1 in bounding_box_test/": junk} and junk > 0
    # versions differ, as they must: source name, variant, protocol description and Market's attributes
    assert len({open_dataset(p).version for p in (builtin, folder, table)}) == 3


def test_attributes_belong_to_identities_and_to_the_spec(crops, tmp_path, capsys):
    rows = list(csv.DictReader((crops / "labels.csv").open()))
    (crops / "labels.yaml").write_text("attributes: {gender: [male, female]}\n")
    rows[1]["gender"] = "male"  # pid 0 is female in row 1
    _write_csv(crops / "labels.csv", rows)
    assert main(["convert", "table", str(crops / "labels.csv"), str(tmp_path / "a"), "--quiet"]) == 2
    assert "row 2: identity 0's attributes differ from row 1" in capsys.readouterr().err
    rows[1]["gender"] = "other"
    _write_csv(crops / "labels.csv", rows)
    assert main(["convert", "table", str(crops / "labels.csv"), str(tmp_path / "b"), "--quiet"]) == 2
    assert "row 2, column 'gender': 'other' is not one of ['male', 'female']" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_tracklet_rows_are_checked(crops, tmp_path, capsys):
    rows = [dict(r, tracklet="t1" if i < 4 else f"t{i}", frame=str(i)) for i, r in
            enumerate(csv.DictReader((crops / "labels.csv").open()))]  # fmt: skip
    for r in rows[:4]:  # t1: four frames of pid 0 seen by camera 1
        r.update(pid="0", camid="1")
    rows[3]["frame"] = "2"  # rows 3 and 4 are both frame 2 of t1 (after frames 0 and 1)
    _write_csv(crops / "labels.csv", rows)
    assert main(["convert", "table", str(crops / "labels.csv"), str(tmp_path / "a"), "--quiet"]) == 2
    assert "row 4: tracklet 't1' repeats frame 2 of row 3" in capsys.readouterr().err
    rows[3]["frame"] = "3"
    rows[2]["pid"] = "1"  # now t1 holds rows of pids 0 and 1
    _write_csv(crops / "labels.csv", rows)
    assert main(["convert", "table", str(crops / "labels.csv"), str(tmp_path / "b"), "--quiet"]) == 2
    assert "row 3: tracklet 't1' differs in pid, camid or view from row 1" in capsys.readouterr().err


def test_folder_tracklets_by_pattern(tmp_path):
    """MARS-style names: pid, camera, tracklet and frame from the file name."""
    mars = synth("mars", tmp_path / "tree", identities=6)
    (mars / "bbox_query").mkdir()
    for person in sorted((mars / "bbox_test").iterdir())[-2:]:  # two test identities as the query side
        person.rename(mars / "bbox_query" / person.name)
    pattern = r"(?P<pid>\d{4}|00-1)C(?P<camid>\d)T(?P<tracklet>\d{4})F(?P<frame>\d{3})\.jpg"
    source = folder_source(mars, pattern=pattern, splits=["train=bbox_train", "query=bbox_query", "gallery=bbox_test"],
                           drop_pids=["00-1"])  # fmt: skip
    out = tmp_path / "data"
    manifest = convert(source, mars, out)
    assert manifest["kind"] == "video" and manifest["protocol_order"] == ["standard"]
    ds = open_dataset(out)
    frames = ds.index.column("frames").to_pylist()
    assert all(f == sorted(f) for f in frames) and len(frames) == sum(s["samples"] for s in manifest["splits"].values())
    assert sum(map(len, frames)) == sum(s["frames"] for s in manifest["splits"].values())
    assert manifest["dropped"] and all(k.startswith("pid 00-1 in ") for k in manifest["dropped"])
    assert verify(out) == []


def test_folder_pattern_rules(market, tmp_path):
    with pytest.raises(ReidDataError, match="named groups pid and camid"):
        folder_source(market, pattern=r"(?P<pid>\d+)\.jpg")
    with pytest.raises(ReidDataError, match="does not match --pattern"):
        folder_source(market, pattern=r"(?P<pid>\d{4})_c(?P<camid>\d).*\.jpg", splits=MARKET_SPLITS)
    with pytest.raises(ReidDataError, match="write NAME=SUBFOLDER"):
        folder_source(market, pattern=MARKET_PATTERN, splits=["train"])


def test_duplicate_table_output_is_refused_and_the_input_is_kept(crops, tmp_path):
    before = {p: p.read_bytes() for p in crops.rglob("*") if p.is_file()}
    assert main(["convert", "table", str(crops / "labels.csv"), str(crops / "img"), "--quiet"]) == 2
    assert {p: p.read_bytes() for p in crops.rglob("*") if p.is_file()} == before
    assert os.path.isdir(crops / "img")

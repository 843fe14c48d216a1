"""Bad input: a clear message naming the file and the rule, no output left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reiddata import ReidDataError, convert, synth


def _copy(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "tree"
    shutil.copytree(tree, dest)
    return dest


def _leaves_nothing(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_root_that_is_not_the_source(synth_tree, tmp_path):
    tree = _copy(synth_tree("dukemtmc-reid"), tmp_path)
    with pytest.raises(ReidDataError, match=r"is not a market1501 tree: missing bounding_box_train"):
        convert("market1501", tree, tmp_path / "out")
    _leaves_nothing(tmp_path)


def test_malformed_name(synth_tree, tmp_path):
    tree = _copy(synth_tree("market1501"), tmp_path)
    bad = tree / "Market-1501-v15.09.15" / "query" / "0002_c1_000451_03.jpg"
    shutil.copy(next(bad.parent.glob("*.jpg")), bad)
    with pytest.raises(ReidDataError, match=r"0002_c1_000451_03.jpg: name does not follow the market1501 pattern"):
        convert("market1501", tree, tmp_path / "out")
    _leaves_nothing(tmp_path)


def test_unexpected_camera(synth_tree, tmp_path):
    tree = _copy(synth_tree("market1501"), tmp_path)
    folder = tree / "Market-1501-v15.09.15" / "bounding_box_train"
    shutil.copy(next(folder.glob("*.jpg")), folder / "0002_c7s1_000451_03.jpg")
    with pytest.raises(ReidDataError, match=r"unexpected camera 7: market1501 has cameras \[1, 2, 3, 4, 5, 6\]"):
        convert("market1501", tree, tmp_path / "out")
    _leaves_nothing(tmp_path)


@pytest.mark.parametrize(
    "damage,rule",
    [
        (lambda b: b[: len(b) // 2], "has no JPEG end-of-image marker FFD9"),
        (lambda b: b"\x00\x00" + b[2:], "does not start with the JPEG start-of-image marker"),
        (lambda b: b"", "does not start with the JPEG"),
    ],
)
def test_truncated_or_corrupt_jpeg(synth_tree, tmp_path, damage, rule):
    tree = _copy(synth_tree("dukemtmc-reid"), tmp_path)
    victim = sorted((tree / "DukeMTMC-reID" / "bounding_box_test").glob("*.jpg"))[3]
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(ReidDataError, match=rf"{victim.name}: not a valid JPEG: {rule}"):
        convert("dukemtmc-reid", tree, tmp_path / "out", shard_size=7, workers=2)
    _leaves_nothing(tmp_path)


def test_damage_inside_the_data_needs_decode_check(synth_tree, tmp_path):
    tree = _copy(synth_tree("dukemtmc-reid"), tmp_path)
    victim = sorted((tree / "DukeMTMC-reID" / "query").glob("*.jpg"))[0]
    data = bytearray(victim.read_bytes())
    sos = data.index(b"\xff\xda")
    data[sos + 2 : len(data) - 2] = b"\xff" * (len(data) - 4 - sos)  # wipe the scan, keep EOI
    victim.write_bytes(bytes(data))
    with pytest.raises(ReidDataError, match=rf"{victim.name}: not a valid JPEG: does not decode"):
        convert("dukemtmc-reid", tree, tmp_path / "out", decode_check=True)
    _leaves_nothing(tmp_path)


def test_empty_split(synth_tree, tmp_path):
    tree = _copy(synth_tree("market1501"), tmp_path)
    for image in (tree / "Market-1501-v15.09.15" / "query").glob("*.jpg"):
        image.unlink()
    with pytest.raises(ReidDataError, match=r"split 'query' is empty"):
        convert("market1501", tree, tmp_path / "out")
    _leaves_nothing(tmp_path)


def test_existing_output_is_replaced_only_with_overwrite(converted, synth_tree, tmp_path):
    out = tmp_path / "out"
    convert("market1501", synth_tree("market1501"), out)
    (out / "extra").write_text("left by a user inside our dataset")
    with pytest.raises(ReidDataError, match=r"out: already exists\n  fix: pass --overwrite"):
        convert("market1501", synth_tree("market1501"), out)
    assert (out / "extra").is_file()
    convert("market1501", synth_tree("market1501"), out, overwrite=True)
    assert not (out / "extra").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_overwrite_keeps_the_old_output(synth_tree, converted, tmp_path):
    tree = _copy(synth_tree("market1501"), tmp_path)
    out = tmp_path / "out"
    convert("market1501", tree, out)
    before = (out / "manifest.json").read_bytes()
    victim = next((tree / "Market-1501-v15.09.15" / "bounding_box_test").glob("00*.jpg"))
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(ReidDataError, match="not a valid JPEG"):
        convert("market1501", tree, out, overwrite=True)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tree"]


def test_synth_rejects_unknown_source_and_variant(tmp_path):
    with pytest.raises(
        ReidDataError,
        match="expected one of agreid-v1, agreid-v2, cargo, dukemtmc-reid, g2a-vreid, market1501, mars, msmt17",
    ):
        synth("cuhk03", tmp_path / "x")
    with pytest.raises(ReidDataError, match="msmt17 has no variant 'v3': expected one of v1, v2"):
        synth("msmt17", tmp_path / "x", variant="v3")
    assert list(tmp_path.iterdir()) == []

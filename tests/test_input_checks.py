"""Nothing of a source tree is dropped silently, and --decode-check sees damage inside the scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from reiddata import ReidDataError, convert
from reiddata.cli import main
from reiddata.jpeg import JpegError, decode_check, jpeg_size


def _copy(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "tree"
    shutil.copytree(tree, out)
    return out


def _market(tree: Path) -> Path:
    return tree / "Market-1501-v15.09.15"


def _body_damaged(data: bytes) -> bytes:
    """A JPEG whose scan is cut in the middle and closed again: header and end marker intact."""
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    return data[: (start + len(data)) // 2] + b"\xff\xd9"


def test_decode_check_catches_damage_inside_the_compressed_data(synth_tree, tmp_path, capsys):
    tree = _copy(synth_tree("market1501"), tmp_path)
    victim = sorted((_market(tree) / "bounding_box_train").glob("*.jpg"))[3]
    victim.write_bytes(_body_damaged(victim.read_bytes()))
    jpeg_size(victim.read_bytes())  # the structural check cannot see it
    with pytest.raises(JpegError, match="does not decode cleanly"):
        decode_check(victim.read_bytes())
    convert("market1501", tree, tmp_path / "plain")  # without --decode-check it passes, as documented
    args = ["convert", "market1501", str(tree), str(tmp_path / "checked"), "--decode-check", "--quiet"]
    assert main(args) == 2
    assert f"{victim}: not a valid JPEG: does not decode cleanly" in capsys.readouterr().err
    assert not (tmp_path / "checked").exists()


def test_clean_images_pass_the_decode_check(synth_tree):
    for path in sorted(synth_tree("market1501").rglob("*.jpg"))[:50]:
        decode_check(path.read_bytes())


@pytest.mark.parametrize("name", ["0002_c1s1_000451_03.JPG", "0002_c1s1_000451_03.jpeg"])
def test_an_image_not_named_jpg_is_an_error_not_a_silent_drop(synth_tree, tmp_path, name):
    tree = _copy(synth_tree("market1501"), tmp_path)
    source = next((_market(tree) / "bounding_box_train").glob("*.jpg"))
    shutil.copy(source, _market(tree) / "bounding_box_train" / name)
    with pytest.raises(ReidDataError, match=f"{name}: an image named '.{name.rsplit('.', 1)[1]}'"):
        convert("market1501", tree, tmp_path / "out")


def test_a_dangling_symlink_is_an_error(synth_tree, tmp_path):
    tree = _copy(synth_tree("market1501"), tmp_path)
    link = _market(tree) / "bounding_box_train" / "0002_c1s1_000451_03.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ReidDataError, match="0002_c1s1_000451_03.jpg: is a symbolic link to nothing"):
        convert("market1501", tree, tmp_path / "out")


def test_other_files_are_counted_and_printed(synth_tree, tmp_path, capsys):
    tree = _copy(synth_tree("market1501"), tmp_path)
    assert main(["convert", "market1501", str(tree), str(tmp_path / "out"), "--quiet"]) == 0
    assert "ignored 1: not a .jpg in bounding_box_test/" in capsys.readouterr().out  # synth's Thumbs.db


def test_a_listed_image_that_is_a_folder_is_an_error(synth_tree, tmp_path):
    tree = _copy(synth_tree("msmt17"), tmp_path)
    base = next(p.parent for p in tree.rglob("list_train.txt"))
    rel = (base / "list_train.txt").read_text().splitlines()[0].split(" ")[0]
    image = base / "train" / rel
    image.unlink()
    image.mkdir()
    with pytest.raises(ReidDataError, match=f"{image}: is a folder where the source lists an image"):
        convert("msmt17", tree, tmp_path / "out")


@pytest.mark.parametrize("bad", [1.5, "yes"])
def test_non_integer_or_non_numeric_mat_values_are_errors(synth_tree, tmp_path, bad):
    tree = _copy(synth_tree("market1501"), tmp_path)
    path = next(tree.rglob("market_attribute.mat"))
    mat = scipy.io.loadmat(str(path))
    train = mat["market_attribute"][0, 0]["train"]
    column = np.asarray(train[0, 0]["hat"], dtype=object if isinstance(bad, str) else float)
    column[0, 0] = bad
    train[0, 0]["hat"] = column if isinstance(bad, float) else np.asarray([[str(v) for v in column.ravel()]])
    scipy.io.savemat(str(path), {"market_attribute": mat["market_attribute"]})
    kind = r"values that are not whole numbers: \[1.5\]" if isinstance(bad, float) else "non-numeric values"
    with pytest.raises(ReidDataError, match=f"train.hat holds {kind}"):
        convert("market1501", tree, tmp_path / "out")

"""MARS and G2A-VReID tracklets: counts, frame lists, protocols, bad input, video storage.

Expected values are read from the synthetic tree's own info files (name lists, track
tables, query lists), independently of the parser under test.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
import webdataset as wds
from PIL import Image

from reiddata import ReidDataError, convert, read_clip, sample_clips
from reiddata.stats import dataset_stats, format_stats
from reiddata.verify import verify


def _info(tree: Path, v2: bool = False) -> dict:
    """The tree's tracklets from its info files: side -> [(row, pid, camid, frame names)]."""
    out = {}
    for side in ("train", "test"):
        names = (tree / "info" / f"{side}_name.txt").read_text().split()
        table = scipy.io.loadmat(str(tree / "info" / f"tracks_{side}_info.mat"))[f"track_{side}_info"].astype(int)
        out[side] = [(i + 1, pid, cam, names[s - 1 : e]) for i, (s, e, pid, cam) in enumerate(table)]
    for variable in ("query_IDX", "query_IDX_A2G") if v2 else ("query_IDX",):
        out[variable] = set(scipy.io.loadmat(str(tree / "info" / f"{variable}.mat"))[variable].ravel().astype(int))
    return out


def _load(out: Path) -> tuple[dict, list[dict]]:
    return json.loads((out / "manifest.json").read_text()), pq.read_table(out / "index.parquet").to_pylist()


def _copy(tree: Path, tmp_path: Path) -> Path:
    shutil.copytree(tree, tmp_path / "tree")
    return tmp_path / "tree"


def _fails_cleanly(source: str, tree: Path, tmp_path: Path, message: str) -> None:
    with pytest.raises(ReidDataError, match=message):
        convert(source, tree, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


@pytest.mark.parametrize("source,variant", [("g2a-vreid", None), ("g2a-vreid", "v2"), ("mars", None)])
def test_tracklets_frames_and_membership_follow_the_info_files(source, variant, synth_tree, converted):
    v2 = variant == "v2"
    tree = synth_tree(source, variant)
    info = _info(tree, v2)
    manifest, index = _load(converted(source, variant))
    by_first = {r["source"]: r for r in index}
    expected_split = {}
    for side, home in (("train", "bbox_train"), ("test", "bbox_test")):
        for row, pid, cam, frames in info[side]:
            first = f"{home}/{frames[0][: 5 if v2 else 4]}/{frames[0]}"
            if pid == -1:
                assert first not in by_first  # junk: dropped
                continue
            sample = by_first[first]
            split = "train" if side == "train" else ("query" if row in info["query_IDX"] else "gallery")
            expected_split[first] = split
            assert (sample["split"], sample["pid"], sample["camid"]) == (split, pid, cam)
            assert sample["frames"] == frames and sample["num_frames"] == len(frames)
            assert sample["view"] == ("aerial" if source == "g2a-vreid" and cam == 2 else "ground")
            if v2 and side == "test":
                assert sample["roles"]["a2g"] == ("query" if row in info["query_IDX_A2G"] else "gallery")
    assert {r["source"]: r["split"] for r in index} == expected_split
    junk = [t for t in info["test"] if t[1] == -1]
    assert manifest["dropped"] == {
        "junk pid -1 tracklets in tracks_test_info.mat": len(junk),
        "junk pid -1 frames in tracks_test_info.mat": sum(len(t[3]) for t in junk),
    }
    assert min(r["num_frames"] for r in index) == 5 < 8  # a tracklet shorter than T
    assert max(r["num_frames"] for r in index) > 100
    assert manifest["splits"]["train"]["frames"] == sum(len(t[3]) for t in info["train"])
    assert manifest["kind"] == "video" and manifest["options"]["storage"] == "jpeg"


def test_g2a_v2_has_its_a2g_protocol_and_v1_does_not(converted):
    v1, _ = _load(converted("g2a-vreid"))
    v2, index = _load(converted("g2a-vreid", "v2"))
    assert v1["variant"] == "G2A-VReID.v1" and v1["protocol_order"] == ["g2a"]
    assert v2["variant"] == "G2A-VReID.v2" and v2["protocol_order"] == ["g2a", "a2g"]
    a2g = v2["protocols"]["a2g"]
    assert a2g["query"]["views"] == {"aerial": a2g["query"]["samples"]} and a2g["query"]["splits"] == ["gallery"]
    assert a2g["gallery"]["views"] == {"ground": a2g["gallery"]["samples"]}
    assert v2["protocols"]["g2a"]["query"]["views"] == {"ground": v2["splits"]["query"]["samples"]}
    assert {r["pid_raw"] for r in index} == {f"{r['pid']:05d}" for r in index}  # 5-character pid folders


def test_mars_keeps_its_distractor_tracklet_in_the_gallery(converted):
    _, index = _load(converted("mars"))
    distractors = [r for r in index if r["pid"] == 0]
    assert [(r["split"], r["label"], r["pid_raw"]) for r in distractors] == [("gallery", -1, "0000")]


def test_a_tracklet_mixing_two_pid_folders_is_an_error(synth_tree, tmp_path):
    tree = _copy(synth_tree("g2a-vreid"), tmp_path)
    names_file = tree / "info" / "train_name.txt"
    names = names_file.read_text().split()
    stranger = next(n for n in names if n[:4] != names[0][:4])
    names[1] = stranger
    names_file.write_text("\n".join(names) + "\n")
    _fails_cleanly("g2a-vreid", tree, tmp_path, r"tracks_train_info.mat row 1 .*disagree on pid folder or camera")


def test_a_missing_frame_file_names_the_tracklet_and_the_file(synth_tree, tmp_path):
    tree = _copy(synth_tree("mars"), tmp_path)
    names = (tree / "info" / "test_name.txt").read_text().split()
    victim = tree / "bbox_test" / names[2][:4] / names[2]
    victim.unlink()
    _fails_cleanly("mars", tree, tmp_path, rf"{victim.name}: frame of the tracklet at .*tracks_test_info.mat row 1")


def test_a_frame_name_breaking_the_mars_rule_is_an_error(synth_tree, tmp_path):
    tree = _copy(synth_tree("g2a-vreid"), tmp_path)
    names_file = tree / "info" / "test_name.txt"
    names = names_file.read_text().split()
    folder = tree / "bbox_test" / names[0][:4]
    bad = names[0][:4] + "X" + names[0][5:]
    shutil.copy(folder / names[0], folder / bad)
    names[0] = bad
    names_file.write_text("\n".join(names) + "\n")
    _fails_cleanly("g2a-vreid", tree, tmp_path, rf"frame {bad} does not follow the g2a-vreid name rule")


def test_a_query_list_naming_a_row_outside_the_table(synth_tree, tmp_path):
    tree = _copy(synth_tree("mars"), tmp_path)
    path = tree / "info" / "query_IDX.mat"
    scipy.io.savemat(str(path), {"query_IDX": np.asarray([[1, 999]], dtype=np.float64)})
    _fails_cleanly("mars", tree, tmp_path, r"query_IDX names rows \[999\] outside the test table")


def test_jpeg_clips_decode_the_chosen_frames_only(converted, synth_tree):
    out = converted("g2a-vreid")
    tree = synth_tree("g2a-vreid")
    sample = next(iter(wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False)))
    meta = json.loads(sample["json"])
    (clip,) = sample_clips(meta["num_frames"], mode="restricted", train=False)
    chosen = set(clip)
    for i in range(meta["num_frames"]):  # frames not chosen are never decoded
        if i not in chosen:
            sample[f"{i:04d}.jpg"] = b"not a jpeg"
    frames = read_clip(sample, clip)
    folder = tree / meta["source"].rsplit("/", 1)[0]
    for i, frame in zip(clip, frames):
        assert np.array_equal(frame, np.asarray(Image.open(folder / meta["frames"][i]).convert("RGB")))


def test_video_storage_is_smaller_deterministic_and_close_to_the_frames(synth_tree, converted, tmp_path):
    tree = synth_tree("g2a-vreid")
    jpeg = converted("g2a-vreid")
    first = convert("g2a-vreid", tree, tmp_path / "a", storage="video", shard_size=40)
    second = convert("g2a-vreid", tree, tmp_path / "b", storage="video", workers=2, shard_size=40)
    assert first["version"] == second["version"]
    assert first["options"]["storage"] == "video" and first["options"]["video"]["codec"] == "mp4v"
    assert verify(tmp_path / "a") == []
    size = sum(p.stat().st_size for p in (tmp_path / "a").glob("*.tar"))
    assert size < 0.6 * sum(p.stat().st_size for p in jpeg.glob("*.tar"))
    videos = {s["__key__"]: s for s in wds.WebDataset(str(tmp_path / "a" / "train-000000.tar"), shardshuffle=False)}
    frames = {s["__key__"]: s for s in wds.WebDataset(str(jpeg / "train-000000.tar"), shardshuffle=False)}
    assert set(videos) == set(frames)
    for key, sample in videos.items():
        assert {k for k in sample if not k.startswith("__")} == {"json", "mp4"}
        meta = json.loads(sample["json"])
        (clip,) = sample_clips(meta["num_frames"], mode="tsn", train=False)
        decoded = read_clip(sample, clip)
        reference = read_clip(frames[key], clip)
        for got, want in zip(decoded, reference):
            assert got.shape == want.shape  # cropped back from the padded canvas
            mse = np.mean((got.astype(float) - want.astype(float)) ** 2)
            assert 10 * np.log10(255**2 / mse) > 22  # lossy, but close: PSNR in dB


def test_convert_refuses_video_storage_for_images(synth_tree, tmp_path):
    with pytest.raises(ReidDataError, match="--store video is for tracklet sources; market1501 holds images"):
        convert("market1501", synth_tree("market1501"), tmp_path / "out", storage="video")


def test_video_stats_count_tracklets_frames_and_lengths(converted):
    stats = dataset_stats(converted("g2a-vreid", "v2"))
    _, index = _load(converted("g2a-vreid", "v2"))
    table = stats["tracklets"]["by_split_and_view"]
    for row in table:
        members = [r for r in index if (r["split"], r["view"]) == (row["split"], row["view"])]
        assert row["tracklets"] == len(members) and row["frames"] == sum(r["num_frames"] for r in members)
        assert row["ids"] == len({r["pid"] for r in members})
    train = stats["tracklets"]["frames_per_tracklet"]["train"]
    assert sum(train["histogram"].values()) == stats["splits"]["train"]["samples"]
    assert train["histogram"]["1-7"] >= 1 and train["histogram"]["64-127"] >= 1
    sizes = stats["sizes_by_view"]
    assert sizes["aerial"]["samples"] + sizes["ground"]["samples"] == sum(r["num_frames"] for r in index)
    assert sizes["aerial"]["height"]["median"] < sizes["ground"]["height"]["median"] / 1.5
    text = format_stats(stats)
    assert "frames per tracklet:" in text and "a2g" in text


def test_jpeg_frame_members_are_the_source_bytes(converted, synth_tree):
    out = converted("mars")
    sample = next(iter(wds.WebDataset(str(out / "query-000000.tar"), shardshuffle=False)))
    meta = json.loads(sample["json"])
    folder = synth_tree("mars") / meta["source"].rsplit("/", 1)[0]
    for i, name in enumerate(meta["frames"]):
        assert sample[f"{i:04d}.jpg"] == (folder / name).read_bytes()
    assert Image.open(io.BytesIO(sample["0000.jpg"])).size == tuple(meta["frame_sizes"][0]) == (64, 128)

"""The hand-built tar writer gives exactly the bytes of Python's tarfile."""

from __future__ import annotations

import io
import tarfile

from reiddata.writer import Item, ShardPlan, write_shard


def _tarfile_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                0,
                0o644,
                0,
                0,
                "",
                "",
            )
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_shard_bytes_equal_tarfile_and_offsets_point_at_each_sample(synth_tree, tmp_path):
    jpegs = sorted(synth_tree("market1501").rglob("*.jpg"))[:5]
    items = tuple(Item({"key": f"train_{i:07d}", "n": i}, (p,)) for i, p in enumerate(jpegs[:3]))
    items += (Item({"key": "train_0000003", "num_frames": 2}, tuple(jpegs[3:5])),)  # a two-frame tracklet
    result = write_shard(tmp_path, ShardPlan("train-000000.tar", "train", items))
    written = (tmp_path / "train-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    assert [n for n, _ in members] == [
        "train_0000000.jpg",
        "train_0000000.json",
        "train_0000001.jpg",
        "train_0000001.json",
        "train_0000002.jpg",
        "train_0000002.json",
        "train_0000003.0000.jpg",
        "train_0000003.0001.jpg",
        "train_0000003.json",
    ]
    assert written == _tarfile_bytes(members)
    assert members[0][1] == jpegs[0].read_bytes()
    assert members[7][1] == jpegs[4].read_bytes()
    offset, size, added = result.placed[1]
    width, height = added["width"], added["height"]
    chunk = io.BytesIO(written[offset : offset + size])
    with tarfile.open(fileobj=chunk) as tar:
        assert [m.name for m in tar.getmembers()] == ["train_0000001.jpg", "train_0000001.json"]
    assert (width, height) == (64, 128)
    assert len(written) % 10240 == 0

"""convert never destroys what it did not create, and a kill at any instant leaves a whole dataset or none."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reiddata import ReidDataError, convert, synth
from reiddata.cli import main
from reiddata.verify import verify

REPO = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tree(synth_tree, tmp_path) -> Path:
    """A private copy of the synthetic Market tree under tmp_path/data/market (a user's only copy)."""
    out = tmp_path / "data" / "market"
    shutil.copytree(synth_tree("market1501"), out)
    (tmp_path / "data" / "notes.txt").write_text("unrelated file beside the dataset")
    return out


@pytest.mark.parametrize("target", ["input", "parent", "inside"])
def test_overwrite_onto_the_input_its_parent_or_inside_it_is_refused_and_nothing_is_touched(tree, target, capsys):
    data = tree.parent
    before = _snapshot(data)
    out = {"input": tree, "parent": data, "inside": tree / "shards"}[target]
    assert main(["convert", "market1501", str(tree), str(out), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "writing there could destroy the source data" in err and str(out) in err
    assert _snapshot(data) == before


def test_overwrite_replaces_only_a_reiddata_dataset(tree, tmp_path, capsys):
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "paper.tex").write_text("months of work")
    assert main(["convert", "market1501", str(tree), str(foreign), "--overwrite", "--quiet"]) == 2
    assert "is not a reiddata dataset" in capsys.readouterr().err
    assert (foreign / "paper.tex").read_text() == "months of work"

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["convert", "market1501", str(tree), str(a_file), "--overwrite", "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "x"

    dataset = tmp_path / "real"
    convert("market1501", tree, dataset, shard_size=40)
    link = tmp_path / "link"
    link.symlink_to(dataset)
    assert main(["convert", "market1501", str(tree), str(link), "--overwrite", "--quiet"]) == 2
    assert "symbolic link" in capsys.readouterr().err and link.is_symlink()

    assert main(["synth", "market1501", str(foreign), "--overwrite"]) == 2
    assert "not a synthetic tree written by reiddata synth" in capsys.readouterr().err
    assert (foreign / "paper.tex").read_text() == "months of work"


def test_a_read_only_parent_or_a_full_disk_is_exit_2_naming_the_path(tree, tmp_path, monkeypatch, capsys):
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if "reiddata-partial" in self.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)  # root ignores chmod, so the refusal is injected
    assert main(["convert", "market1501", str(tree), str(tmp_path / "ro" / "out"), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ro' / 'out'}: cannot create the output here (Permission denied)" in err
    monkeypatch.undo()

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "full"
    assert main(["convert", "market1501", str(tree), str(out), "--quiet", "--workers", "1"]) == 2
    assert f"{out}: could not write the output (No space left on device)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ro"]  # no partial left


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


RACE = """
import sys
from reiddata.cli import main
sys.exit(main(["convert", "market1501", sys.argv[1], sys.argv[2], "--quiet", "--workers", "1", "--shard-size", "40"]))
"""


def test_two_conversions_racing_to_one_new_output_exactly_one_wins(tree, tmp_path):
    out = tmp_path / "out"
    procs = [_python(RACE, str(tree), str(out)) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    assert "exists" in next(err for code, err in results if code == 2)
    assert verify(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


# A conversion that kills itself (SIGKILL: no cleanup runs) at a chosen instant.
KILLED = """
import os, signal, sys
from pathlib import Path
import reiddata.output as output, reiddata.jobs as converting
when = sys.argv[3]
if when == "mid-write":
    real = converting.write_shard
    def write_then_die(directory, plan):
        result = real(directory, plan)
        os.kill(os.getpid(), signal.SIGKILL)
    converting.write_shard = write_then_die
elif when == "after-exchange":
    real_move = output._move_into_place
    def move_then_die(*args, **kwargs):
        real_move(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    output._move_into_place = move_then_die
elif when == "between-renames":
    output._renameat2 = lambda src, dst, flags: False  # a filesystem without RENAME_EXCHANGE
    real_rename = os.rename
    def rename_then_die(src, dst):
        real_rename(src, dst)
        if "reiddata-old" in str(dst):
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename_then_die
from reiddata import convert
convert("market1501", Path(sys.argv[1]), Path(sys.argv[2]), shard_size=40, overwrite=True)
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".reiddata-" in p.name)


@pytest.mark.parametrize("when", ["mid-write", "after-exchange", "between-renames"])
def test_a_kill_at_any_instant_leaves_a_whole_dataset_and_the_next_run_repairs(tree, tmp_path, when):
    out = tmp_path / "out"
    old = convert("market1501", tree, out, shard_size=40)
    other = synth("market1501", tmp_path / "other", identities=10, seed=5)
    proc = _python(KILLED, str(other), str(out), when)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert _leftovers(tmp_path), "the killed run left its folder behind"
    if when == "between-renames":
        assert not out.exists()  # the only gap, without RENAME_EXCHANGE; the next run puts the old one back
    else:
        expected = old["version"] if when == "mid-write" else None
        assert verify(out) == [] and (expected is None or _version(out) == expected)
    new = convert("market1501", other, tmp_path / "again", shard_size=40)
    convert("market1501", other, out, shard_size=40, overwrite=True)  # the next run writing out
    assert _leftovers(tmp_path) == []
    assert verify(out) == [] and _version(out) == new["version"]


def _version(out: Path) -> str:
    import json

    return json.loads((out / "manifest.json").read_text())["version"]


def test_the_next_run_puts_back_an_old_dataset_left_between_renames(tree, tmp_path):
    out = tmp_path / "out"
    old = convert("market1501", tree, out, shard_size=40)
    proc = _python(KILLED, str(tree), str(out), "between-renames")
    assert proc.wait(timeout=120) == -signal.SIGKILL and not out.exists()
    with pytest.raises(ReidDataError, match="already exists"):  # the repair runs first, then out exists again
        convert("market1501", tree, out, shard_size=40)
    assert _version(out) == old["version"] and verify(out) == [] and _leftovers(tmp_path) == []


SLOW = """
import sys, time
import reiddata.jobs as converting
real = converting.write_shard
def slow(directory, plan):
    time.sleep(0.5)
    return real(directory, plan)
converting.write_shard = slow
from reiddata.cli import main
sys.exit(main(["convert", "market1501", sys.argv[1], sys.argv[2], "--quiet", "--workers", "1", "--shard-size", "20"]))
"""


def test_sigterm_cleans_up_like_ctrl_c(tree, tmp_path):
    out = tmp_path / "out"
    proc = _python(SLOW, str(tree), str(out))
    deadline = time.monotonic() + 60
    while not _leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(tmp_path), "the conversion never started writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stderr.read()
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_stale_partial_from_kill_9_is_removed_but_a_live_one_is_not(tree, tmp_path):
    import fcntl

    live = tmp_path / ".out.reiddata-partial-1-abcd"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another conversion, alive, writing the same output
    stale = tmp_path / ".out.reiddata-partial-2-dead"
    stale.mkdir()
    (stale / "train-000000.tar").write_bytes(b"half")
    try:
        convert("market1501", tree, tmp_path / "out", shard_size=40)
        assert live.is_dir() and not stale.exists()
    finally:
        os.close(fd)

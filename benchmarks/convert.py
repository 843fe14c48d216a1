"""Benchmark: `reiddata convert` on a tree of MSMT17 V1's size, beside `tar cf` of the same files.

    python benchmarks/convert.py [--work DIR] [--images N] [--workers 1 2]

Builds (once, cached in --work) an MSMT17 V1 tree of 126,441 JPEG files: the real list
files' names when ../shared/real/msmt17_v1 is present, generated names otherwise. The
pixels come from a pool of synthetic person crops (`reiddata.synthetic`), each file a real
copy. Both tools run with a warm page cache (a warm-up pass of tar reads every file
first) and start with nothing left to write back (`sync` before each), so the ratio
compares the work each does, not the disk.
Target: convert takes at most 2x tar's time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reiddata import convert
from reiddata.sources import msmt17
from reiddata.synthetic.people import jpeg_bytes, make_people, render

REAL_LISTS = Path(__file__).resolve().parents[2] / "shared" / "real" / "msmt17_v1"
POOL = 4000  # distinct crops; file sizes spread like real crops of varying size


def _lines(images: int) -> dict[str, list[str]]:
    if REAL_LISTS.is_dir() and images == 126_441:
        return {s: (REAL_LISTS / f"list_{s}.txt").read_text().splitlines() for s, _ in msmt17.LISTS}
    rng = np.random.default_rng(0)
    share = {"train": 0.239, "val": 0.019, "query": 0.092, "gallery": 0.65}
    out: dict[str, list[str]] = {}
    serial = 0  # names unique across the four lists
    for split, fraction in share.items():
        count, ids = int(images * fraction), 1041 if split in ("train", "val") else 3060
        lines = []
        for i in range(serial, serial + count):
            pid = i % ids
            cam = int(rng.integers(1, 16))
            lines.append(f"{pid:04d}/{pid:04d}_{i % 1000:03d}_{cam:02d}_0303morning_{i % 9999:04d}_{i % 7}.jpg {pid}")
        out[split] = lines
        serial += count
    return out


def build_tree(root: Path, images: int) -> Path:
    base = root / "MSMT17_V1"
    marker = root / f"complete-{images}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    people = make_people(600, 0, up_colours=("black", "white", "red", "blue"), down_colours=("black", "gray", "blue"))
    rng = np.random.default_rng(1)
    pool = []
    for i in range(POOL):
        height = int(rng.integers(96, 320))
        size = (int(height * rng.uniform(0.35, 0.5)), height)
        pool.append(jpeg_bytes(render(people[i % len(people)], view="ground", size=size, rng=rng)))
    n = 0
    for split, lines in _lines(images).items():
        side = "train" if split in ("train", "val") else "test"
        base.mkdir(parents=True, exist_ok=True)
        (base / f"list_{split}.txt").write_text("".join(line + "\n" for line in lines))
        for line in lines:
            path = base / side / line.split(" ")[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pool[n % POOL])
            n += 1
    marker.write_text(str(n))
    return root


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reiddata-bench"))
    parser.add_argument("--images", type=int, default=126_441)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    work = Path(args.work)
    tree = build_tree(work / "tree", args.images)
    files = sum(1 for _ in (tree / "MSMT17_V1").rglob("*.jpg"))
    size = sum(p.stat().st_size for p in (tree / "MSMT17_V1").rglob("*.jpg"))
    tar_out = work / "plain.tar"
    tar = ["tar", "cf", str(tar_out), "-C", str(tree), "MSMT17_V1"]
    subprocess.run(tar, check=True)  # warm-up: every file read once
    os.sync()  # each timed run starts with no writeback of an earlier run's gigabyte pending
    tar_s = _timed(lambda: subprocess.run(tar, check=True))
    results = {"images": files, "bytes": size, "cpus": os.cpu_count(), "tar_s": round(tar_s, 2)}
    print(f"tree: {files} images, {size / 1e6:.0f} MB; tar cf: {tar_s:.2f} s ({files / tar_s:,.0f} img/s)")
    for workers in args.workers:
        out = work / f"shards-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        os.sync()
        start = time.perf_counter()
        manifest = convert("msmt17", tree, out, workers=workers)
        seconds = time.perf_counter() - start
        ratio = seconds / tar_s
        results[f"convert_w{workers}_s"] = round(seconds, 2)
        results[f"convert_w{workers}_ratio_to_tar"] = round(ratio, 2)
        results[f"convert_w{workers}_version"] = manifest["version"]  # same tree, same bytes: one version
        print(
            f"convert --workers {workers}: {seconds:.2f} s ({files / seconds:,.0f} img/s), {ratio:.2f}x tar's time, "
            f"version {manifest['version']}"
        )
    tar_out.unlink()
    results["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) after the runs: {results['load_average_1min']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

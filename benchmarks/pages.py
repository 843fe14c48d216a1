"""Benchmark: `reiddata show` on an MSMT17-sized and a MARS-sized dataset, and the pages in chromium.

    python benchmarks/pages.py [--work DIR] [--images 126441] [--tracklets 20478] [--workers 2]

- **MSMT17-sized**: the 126,441-image tree of `benchmarks/convert.py` (built once,
  cached in --work), converted; `reiddata show` makes one thumbnail per image.
- **MARS-sized**: MARS's 20,478 tracklets of 1,261 identities on 6 cameras, as a
  table (`reiddata convert table`): frames are hard links to a pool of synthetic MARS
  frames (`reiddata synth mars`), 8 to 24 per tracklet (MARS averages 58: the page
  decodes at most 12 per tracklet, the sampler's 8 and evenly spaced others, so its
  cost follows the tracklet count; the read of each tracklet's bytes is smaller).

Each `show` runs as its own process under `/usr/bin/time -v` (wall time and peak
memory), then the page is opened in headless chromium (Debian's, driven by
playwright): time until the first page of identities is drawn, until a camera filter
and the next page are drawn, and whether every visible image decoded. Page weight:
the folder's bytes (data.js, thumbnail sheets, scripts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from browser import FLAGS, chromium_path  # noqa: E402  (the page tests' browser settings)
from convert import build_tree  # noqa: E402

from reiddata import convert, open_dataset, synth  # noqa: E402


def timed(command: list[str]) -> dict:
    """Wall seconds and peak resident memory of a command, from GNU time."""
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr)[1]
    seconds = sum(float(part) * 60**k for k, part in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)[1])
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(rss / 1024), "stdout": run.stdout.strip()}


def browse(index: Path) -> dict:
    """Times (ms, in the page) to draw the first page, a camera filter and the next page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(index.resolve().as_uri())
        page.wait_for_function("document.getElementById('count') && document.getElementById('count').textContent")
        first = page.evaluate("performance.now()")
        camera = page.eval_on_selector("#filter-camera", "(s) => s.options[2].value")
        filtered = page.evaluate(
            """(camera) => { const s = document.getElementById('filter-camera'); const t = performance.now();
                s.value = camera; s.dispatchEvent(new Event('change')); return performance.now() - t; }""",
            camera,
        )
        paged = page.evaluate(
            """() => { const t = performance.now(); document.getElementById('next-page').click();
                return performance.now() - t; }"""
        )
        page.wait_for_function("[...document.images].every((i) => i.complete)")
        broken = page.evaluate("[...document.images].filter((i) => i.naturalWidth === 0).length")
        shown = page.evaluate("document.images.length")
        browser.close()
    return {"first_page_ms": round(first), "filter_ms": round(filtered), "next_page_ms": round(paged),
            "images_shown": shown, "images_broken": broken, "errors": errors}  # fmt: skip


def tracklet_table(root: Path, tracklets: int, identities: int = 1261) -> Path:
    """A MARS-sized tracklet table whose frames are hard links into a synthetic frame pool."""
    import numpy as np

    pool = sorted(synth("mars", root / "pool", identities=60).rglob("*.jpg"))
    rng = np.random.default_rng(0)
    frames_dir = root / "frames"
    rows = []
    for t in range(tracklets):
        pid = t * identities // tracklets
        split = "train" if pid < identities // 2 else ("query" if t % 7 == 0 else "gallery")
        folder = frames_dir / f"{t:05d}"
        folder.mkdir(parents=True)
        start = int(rng.integers(len(pool)))
        for f in range(int(rng.integers(8, 25))):
            name = folder / f"{f:03d}.jpg"
            os.link(pool[(start + f) % len(pool)], name)
            rows.append(f"frames/{t:05d}/{f:03d}.jpg,{pid},{1 + t % 6},{split},{t},{f}")
    table = root / "mars-sized.csv"
    table.write_text("path,pid,camid,split,tracklet,frame\n" + "\n".join(rows) + "\n")
    return table


def weight(folder: Path) -> dict:
    files = [f for f in folder.rglob("*") if f.is_file()]
    sheets = [f for f in files if f.parent.name == "thumbs"]
    return {"files": len(files), "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
            "data_js_mb": round((folder / "data.js").stat().st_size / 2**20, 2), "sheets": len(sheets)}  # fmt: skip


def measure(name: str, shards: Path, out: Path, workers: int) -> dict:
    ds = open_dataset(shards)
    result = {"dataset": name, "samples": len(ds.index), "kind": ds.kind}
    result |= timed(["reiddata", "show", str(shards), "--out", str(out), "--workers", str(workers), "--quiet"])
    result |= weight(out)
    if chromium_path():
        result |= browse(out / "index.html")
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reiddata-bench"))
    parser.add_argument("--images", type=int, default=126_441)
    parser.add_argument("--tracklets", type=int, default=20_478)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    results = []
    tree = build_tree(work / "tree", args.images)  # shared with benchmarks/convert.py
    shards = work / f"remote-{args.images}" / "msmt17"  # shared with benchmarks/remote.py
    if not (shards / "manifest.json").is_file():
        convert("msmt17", tree, shards, workers=2, overwrite=True)
    results.append(measure("msmt17-sized", shards, work / "page-msmt17", args.workers))
    mars = work / f"mars-{args.tracklets}"
    if not (mars / "shards" / "manifest.json").is_file():
        shutil.rmtree(mars, ignore_errors=True)
        table = tracklet_table(mars / "tree", args.tracklets)
        timed_convert = timed(["reiddata", "convert", "table", str(table), str(mars / "shards"), "--workers", "2",
                               "--quiet"])  # fmt: skip
        print(json.dumps({"convert_table": {k: timed_convert[k] for k in ("seconds", "peak_rss_mb")}}), flush=True)
    results.append(measure("mars-sized", mars / "shards", work / "page-mars", args.workers))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

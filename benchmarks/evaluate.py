"""Evaluation at research scale: time and peak memory of ranking a whole test set.

    python benchmarks/evaluate.py [--shapes msmt17 market500k] [--skip old rerank]

Shapes (1280-d features, CLIP-ReID's test feature size, identity-structured: each
identity a random centre, each item its centre plus Gaussian noise, sigma 2.8, which
gives mAP about 0.69 on the MSMT17 shape, near CLIP-ReID's 73.4):
- ``msmt17``: 11,659 queries x 82,161 gallery items, 3,060 identities, 15 cameras.
- ``market500k``: 3,368 queries x 519,732 gallery items: Market-1501's 19,732-item
  gallery of 750 test identities plus 500,000 distractors (pid -1, 50,000 random centres).

Each path runs in its own process under ``/usr/bin/time -v`` (wall time of the ranking
only, peak RSS of the whole process), all in one run:
- ``features``: make the features and stop: the memory every path starts from.
- ``product``: the bare matrix products of the same features, in the blocks
  ``rank_features`` uses (1 GiB), nothing else: the floor, since no exact ranking is
  faster than computing its distances.
- ``new``: ``rank_features`` (metrics and the chance baseline), 1 GiB blocks.
- ``old``: ``rank_metrics(pairwise_distance(...))`` on the whole matrix, then again on
  random features for the chance baseline, as ``evaluate`` did before (only where it fits).
- ``rerank``: ``rank_features(rerank=True)`` (k1 20, k2 6, lambda 0.3).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

import numpy as np

SHAPES = {
    "msmt17": {"queries": 11_659, "gallery": 82_161, "ids": 3_060, "cameras": 15, "distractors": 0},
    "market500k": {"queries": 3_368, "gallery": 19_732, "ids": 750, "cameras": 6, "distractors": 500_000},
}
DIM, SIGMA, SEED = 1280, 2.8, 0
PATHS = ("features", "product", "new", "old", "rerank")
FITS = {("market500k", "old"), ("market500k", "rerank")}  # (shape, path) pairs that do not fit in 24 GB


def _fill(out: np.ndarray, ids: np.ndarray, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Centre plus noise, written into ``out`` a chunk at a time (no full-size temporaries)."""
    for s in range(0, len(ids), 65_536):
        chunk = out[s : s + 65_536]
        rng.standard_normal(dtype=np.float32, out=chunk)
        chunk *= SIGMA
        chunk += centres[ids[s : s + 65_536]]
    return out


def make(shape: str) -> tuple:
    spec = SHAPES[shape]
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((spec["ids"], DIM), dtype=np.float32)
    q_pids = rng.integers(0, spec["ids"], spec["queries"])
    g_pids = rng.integers(0, spec["ids"], spec["gallery"])
    q_cams = rng.integers(0, spec["cameras"], spec["queries"])
    g_cams = rng.integers(0, spec["cameras"], spec["gallery"] + spec["distractors"])
    query = _fill(np.empty((spec["queries"], DIM), np.float32), q_pids, centres, rng)
    gallery = np.empty((spec["gallery"] + spec["distractors"], DIM), np.float32)
    _fill(gallery[: spec["gallery"]], g_pids, centres, rng)
    if spec["distractors"]:  # 50,000 other people, never a query's
        others = rng.standard_normal((50_000, DIM), dtype=np.float32)
        _fill(gallery[spec["gallery"] :], rng.integers(0, 50_000, spec["distractors"]), others, rng)
        g_pids = np.concatenate([g_pids, np.full(spec["distractors"], -1)])
    return query, gallery, q_pids, g_pids, q_cams, g_cams


def run_path(shape: str, path: str) -> dict:
    """In the child process: one path, its ranking time and headline figures."""
    import torch

    from reidmodels.evaluation import pairwise_distance, rank_features, rank_metrics
    from reidmodels.evaluation.ranking import DEFAULT_MEMORY, prepare_features, rows_per_block

    query, gallery, q_pids, g_pids, q_cams, g_cams = make(shape)
    start = time.perf_counter()
    out: dict = {}
    if path == "product":  # the matrix products alone, blocks as rank_features makes them
        q, g = prepare_features(query, gallery, "cosine", torch.device("cpu"))
        rows = rows_per_block(len(g), DEFAULT_MEMORY)
        for s in range(0, len(q), rows):
            block = q[s : s + rows] @ g.T
            del block
    elif path == "new":
        result = rank_features(query, gallery, q_pids, g_pids, q_cams, g_cams)
        out = {k: round(float(result[k]), 4) for k in ("mAP", "mINP", "chance_mAP")}
        out["rank1"] = round(float(result["cmc"][0]), 4)
    elif path == "old":
        result = rank_metrics(pairwise_distance(query, gallery), q_pids, g_pids, q_cams, g_cams)
        noise = np.random.default_rng(1).standard_normal(query.shape, dtype=np.float32)
        chance = rank_metrics(
            pairwise_distance(noise, np.random.default_rng(2).standard_normal(gallery.shape, dtype=np.float32)),
            q_pids, g_pids, q_cams, g_cams,
        )  # fmt: skip
        out = {"mAP": round(result["mAP"], 4), "mINP": round(result["mINP"], 4), "chance_mAP": round(chance["mAP"], 4)}
    elif path == "rerank":
        result = rank_features(query, gallery, q_pids, g_pids, q_cams, g_cams, rerank=True)
        out = {k: round(float(result[k]), 4) for k in ("mAP", "mINP")} | {"rank1": float(result["cmc"][0])}
    return {"seconds": round(time.perf_counter() - start, 1), **out}


def measure(shape: str, path: str) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", shape, path]
    done = subprocess.run(command, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = round(int(rss.group(1)) / 2**20, 2) if rss else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--skip", nargs="*", default=[], choices=PATHS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_path(*args.child)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; dim {DIM}, sigma {SIGMA}")
    for shape in args.shapes:
        spec = SHAPES[shape]
        print(f"\n{shape}: {spec['queries']} x {spec['gallery'] + spec['distractors']}")
        rows = {}
        for path in PATHS:
            if path in args.skip or (shape, path) in FITS:
                continue
            rows[path] = measure(shape, path)
            print(f"  {path:9s} {json.dumps(rows[path])}", flush=True)
        base, floor = rows.get("features", {}).get("peak_rss_gb"), rows.get("product", {}).get("seconds")
        for path in ("new", "rerank"):
            if path in rows and "seconds" in rows[path] and floor and base:
                ratio = rows[path]["seconds"] / floor
                above = rows[path]["peak_rss_gb"] - base
                print(f"  {path}: {ratio:.2f}x the bare product, peak RSS {above:+.2f} GB above the features")


if __name__ == "__main__":
    main()

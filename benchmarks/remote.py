"""Benchmark: reading a dataset from loopback HTTP and S3 servers against local reads, cold and warm cache.

    python benchmarks/remote.py [--work DIR] [--images 126441] [--workers 2] [--decode numpy|none]
                                [--rate 100e6] [--latency 0.02] [--prefetch 2]

The MSMT17-sized tree of `benchmarks/convert.py` (--images JPEG files, built once and
cached in --work) is converted, then served by the test suite's real
servers on 127.0.0.1: aiohttp's Range-capable static server and moto's S3 server.
Each run reads one whole epoch of the train split through DataLoader(num_workers =
--workers, batch_size=64), decoded and resized to 256x128 (or raw bytes with
--decode none):

  map-style   ShardDataset in a random order (one pread per sample); remote: the
              verified shard cache, cold (empty: each shard downloaded, hashed,
              renamed in) then warm (the same cache again)
  streaming   StreamingDataset (blocks of 2000); remote cold: each shard streamed
              into a temporary file and hashed before use, nothing kept; warm: the
              cache the map-style run filled
  slow        the HTTP server throttled to --rate bytes/s shared and --latency s per
              request (a real network): cold streaming and map-style with --prefetch
              shards fetched ahead per worker, and streaming without (--prefetch 0)

Remote readers fetch --prefetch shards ahead (the default, 2). Targets (issue 30):
cold map-style and streaming from loopback HTTP and S3 at 0.9x of local or better;
cold streaming through the slow server at 0.8x or better. Each remote epoch is
compared with the local epochs of the same reader just before and after it (their
mean): this machine's speed drifts by 10% over minutes. A cold epoch starts from an
empty cache folder. The S3 server runs in a process of its own, as a store does.
Page cache warm for local reads (one epoch first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from convert import build_tree  # noqa: E402
from servers import HttpServer, S3Server  # noqa: E402  (the tests' loopback servers)

from reiddata import ShardDataset, StreamingDataset, convert, open_dataset  # noqa: E402

BATCH = 64
SIZE = (256, 128)


def resize(image: np.ndarray) -> torch.Tensor:
    import cv2

    return torch.from_numpy(cv2.resize(image, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR))


def count(items: list[dict]) -> int:
    return len(items)


def _epoch(dataset, workers: int, shuffle: bool) -> float:
    """Samples/s of one epoch, worker start-up included (as a training epoch pays it)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=shuffle, num_workers=workers, collate_fn=count
    )
    start = time.perf_counter()
    samples = sum(loader)
    return samples / (time.perf_counter() - start)


def _best(dataset, workers: int, shuffle: bool, repeat: int = 3) -> float:
    """The best of ``repeat`` epochs: for reads whose cost does not change between epochs."""
    return max(_epoch(dataset, workers, shuffle) for _ in range(repeat))


def _readers(location: str, cache: Path, decode: str | None, stream_cache: bool, prefetch: int = 2):
    ds = open_dataset(location, cache_dir=cache)
    transform = resize if decode else None
    mapped = ShardDataset(ds, "train", decode=decode, transform=transform, prefetch=prefetch)
    options = {"decode": decode, "transform": transform, "shuffle": 2000, "cache": stream_cache, "prefetch": prefetch}
    return mapped, StreamingDataset(ds, "train", **options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reiddata-bench"))
    parser.add_argument("--images", type=int, default=126_441)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode", choices=["numpy", "none"], default="numpy")
    parser.add_argument("--rate", type=float, default=100e6, help="bytes/s of the slow server's link")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds before each slow response")
    parser.add_argument("--prefetch", type=int, default=2, help="shards fetched ahead per worker")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    decode = None if args.decode == "none" else args.decode
    work = Path(args.work)
    tree = build_tree(work / "tree", args.images)  # shared with benchmarks/convert.py
    shards = work / f"remote-{args.images}" / "msmt17"
    if not (shards / "manifest.json").is_file():
        convert("msmt17", tree, shards, workers=2, overwrite=True)
    http, s3 = HttpServer(shards.parent), S3Server(process=True)  # a store is not in the trainer's process
    slow = HttpServer(shards.parent, rate=args.rate, latency=args.latency)
    os.environ.update(s3.environment())
    locations = {"http": f"{http.url}/msmt17", "s3": s3.upload(shards, "bench", "msmt17")}
    results: dict[str, float] = {}
    ratios: dict[str, float] = {}

    try:
        local = dict(zip(("map-style", "streaming"), _readers(str(shards), work / "unused", decode, False)))
        _epoch(local["map-style"], args.workers, True)  # page cache and worker import warm-up

        def run(name: str, reader, kind: str) -> None:
            """One epoch of ``reader``, against the local epochs of its kind just before and after
            (this machine's speed drifts by 10% over minutes: a ratio compares like moments)."""
            shuffle = kind == "map-style"
            before = _epoch(local[kind], args.workers, shuffle)
            rate = _epoch(reader, args.workers, shuffle)
            after = _epoch(local[kind], args.workers, shuffle)
            results[name], ratios[name] = round(rate, 1), round(2 * rate / (before + after), 3)
            results[f"local {kind}"] = round(max(results.get(f"local {kind}", 0), before, after), 1)
            print(f"{name:34s} {rate:>9,.1f} samples/s  {ratios[name]:.3f}x local ({before:,.0f}, {after:,.0f})")

        for name, location in locations.items():
            cache = work / f"cache-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            mapped, stream = _readers(location, cache, decode, False, args.prefetch)
            run(f"{name} streaming cold", stream, "streaming")
            shutil.rmtree(cache, ignore_errors=True)
            run(f"{name} map-style cold", mapped, "map-style")
            run(f"{name} map-style warm", mapped, "map-style")
            mapped, stream = _readers(location, cache, decode, True, args.prefetch)
            run(f"{name} streaming warm", stream, "streaming")
            shutil.rmtree(cache, ignore_errors=True)
        slow_url = f"{slow.url}/msmt17"
        for prefetch in sorted({args.prefetch, 0}, reverse=True):
            cache = work / "cache-slow"
            for kind, kept in (("streaming", True), ("streaming", False), ("map-style", False)):
                shutil.rmtree(cache, ignore_errors=True)
                mapped, stream = _readers(slow_url, cache, decode, kept, prefetch)
                how = {True: " cached", False: ""}[kept] if kind == "streaming" else ""
                run(f"slow {kind}{how} cold prefetch={prefetch}", stream if kind == "streaming" else mapped, kind)
            shutil.rmtree(cache, ignore_errors=True)
        s3_cpu = s3.cpu_seconds()
    finally:
        http.stop()
        slow.stop()
        s3.stop()
    print(f"the S3 server's own CPU over the run: {s3_cpu:.1f} s (2 cores shared with the readers)")
    shard_list = open_dataset(shards).split_shards("train")
    size = sum(s["bytes"] for s in shard_list)
    link, local_epoch = size / args.rate + args.latency * len(shard_list), len(mapped) / results["local streaming"]
    print(f"the slow link alone needs {link:.2f} s for the train split; a local epoch took {local_epoch:.2f} s")
    summary = {"train_samples": len(mapped), "train_bytes": size, "samples_per_s": results, "ratio_to_local": ratios}
    summary["s3_server_cpu_s"] = round(s3_cpu, 1)
    print(json.dumps({k: summary[k] for k in ("train_samples", "train_bytes")}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

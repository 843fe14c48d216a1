"""Benchmark: reading a dataset from loopback HTTP and S3 servers against local reads, cold and warm cache.

    python benchmarks/remote.py [--work DIR] [--images 126441] [--workers 2] [--decode numpy|none]

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

Targets (issue 13): warm-cache map-style within 10% of local; cold streaming from
loopback within 25% of local. Local and warm figures are the best of 3 epochs; a
cold epoch happens once. Page cache warm for local reads (one epoch first).
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


def _readers(location: str, cache: Path, decode: str | None, stream_cache: bool):
    ds = open_dataset(location, cache_dir=cache)
    transform = resize if decode else None
    mapped = ShardDataset(ds, "train", decode=decode, transform=transform)
    stream = StreamingDataset(ds, "train", decode=decode, transform=transform, shuffle=2000, cache=stream_cache)
    return mapped, stream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reiddata-bench"))
    parser.add_argument("--images", type=int, default=126_441)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode", choices=["numpy", "none"], default="numpy")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    decode = None if args.decode == "none" else args.decode
    work = Path(args.work)
    tree = build_tree(work / "tree", args.images)  # shared with benchmarks/convert.py
    shards = work / f"remote-{args.images}" / "msmt17"
    if not (shards / "manifest.json").is_file():
        convert("msmt17", tree, shards, workers=2, overwrite=True)
    http, s3 = HttpServer(shards.parent), S3Server()
    os.environ.update(s3.environment())
    locations = {"http": f"{http.url}/msmt17", "s3": s3.upload(shards, "bench", "msmt17")}
    results: dict[str, float] = {}

    def record(name: str, rate: float) -> None:
        results[name] = round(rate, 1)
        print(f"{name:22s} {rate:>9,.1f} samples/s", flush=True)

    try:
        mapped, stream = _readers(str(shards), work / "unused", decode, False)
        _epoch(mapped, args.workers, True)  # page cache and worker import warm-up
        record("local map-style", _best(mapped, args.workers, True))
        record("local streaming", _best(stream, args.workers, False))
        for name, location in locations.items():
            cache = work / f"cache-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            mapped, stream = _readers(location, cache, decode, False)
            record(f"{name} streaming cold", _epoch(stream, args.workers, False))
            record(f"{name} map-style cold", _epoch(mapped, args.workers, True))
            record(f"{name} map-style warm", _best(mapped, args.workers, True))
            mapped, stream = _readers(location, cache, decode, True)
            record(f"{name} streaming warm", _best(stream, args.workers, False))
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        http.stop()
        s3.stop()
    ratios = {k: round(v / results[f"local {k.split(' ')[1]}"], 3) for k, v in results.items() if " " in k[4:]}
    print("ratio to local: " + ", ".join(f"{k} {v}" for k, v in ratios.items() if not k.startswith("local")))
    info = open_dataset(shards)
    size = sum(s["bytes"] for s in info.split_shards("train"))
    summary = {"train_samples": len(mapped), "train_bytes": size, "samples_per_s": results, "ratio_to_local": ratios}
    print(json.dumps({k: summary[k] for k in ("train_samples", "train_bytes")}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

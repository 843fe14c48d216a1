"""Benchmark: one T=8 clip from 64-frame tracklets vs decoding all 64, JPEG frames vs video.

    python benchmarks/temporal.py [--tracklets N] [--repeats R] [--json]

Renders N synthetic 64-frame tracklets in two shapes: MARS-like (every frame
128x256, as MARS is distributed) and G2A-UAV-like (small crops whose size drifts
along the tracklet). Each is stored the two ways `reiddata convert` can store it:
JPEG frames (the source bytes, quality 90 here) and one MP4 (`--store video`).
For each it reports bytes per tracklet, encode time, the time to get one test-time
TSN clip of T=8 frames (`read_clip` decodes only those) and all 64 frames, their
ratio, and the video's quality against the JPEG frames (PSNR in dB).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from reiddata import read_clip, sample_clips
from reiddata.synthetic.people import jpeg_bytes, make_people, render
from reiddata.video import EXTENSION, encode_tracklet

FRAMES = 64
T = 8


def _tracklet(person, rng, *, fixed: tuple[int, int] | None, view: str) -> list[bytes]:
    out = []
    for t in range(FRAMES):
        if fixed:
            size = fixed
        else:
            scale = 1.0 + 0.25 * math.sin(2 * math.pi * t / FRAMES)
            size = (int(34 * scale), int(56 * scale))
        out.append(jpeg_bytes(render(person, view=view, size=size, rng=rng)))
    return out


def _samples(count: int, *, fixed: tuple[int, int] | None, view: str) -> tuple[list[dict], list[dict], float]:
    """(JPEG samples, video samples, encode seconds per tracklet) as webdataset yields them."""
    people = make_people(count, 0, up_colours=("black", "red", "blue"), down_colours=("black", "gray", "blue"))
    jpeg, video, encode = [], [], 0.0
    for person in people:
        rng = np.random.default_rng(person.index)
        frames = _tracklet(person, rng, fixed=fixed, view=view)
        sizes = [list(_size(f)) for f in frames]
        meta = json.dumps({"num_frames": FRAMES, "frame_sizes": sizes}).encode()
        jpeg.append({"json": meta, **{f"{i:04d}.jpg": f for i, f in enumerate(frames)}})
        start = time.perf_counter()
        video.append({"json": meta, EXTENSION: encode_tracklet(frames, sizes)})
        encode += time.perf_counter() - start
    return jpeg, video, encode / count


def _size(data: bytes) -> tuple[int, int]:
    from reiddata.jpeg import jpeg_size

    return jpeg_size(data)


def _time(samples: list[dict], indices: list[int], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for sample in samples:
            read_clip(sample, indices)
        best = min(best, time.perf_counter() - start)
    return best / len(samples)


def _psnr(jpeg: list[dict], video: list[dict]) -> tuple[float, float]:
    values = []
    for a, b in zip(jpeg, video):
        for x, y in zip(read_clip(a, range(FRAMES)), read_clip(b, range(FRAMES))):
            mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
            values.append(10 * math.log10(255**2 / max(mse, 1e-9)))
    return float(np.mean(values)), float(np.min(values))


def run(tracklets: int, repeats: int) -> dict:
    clip = sample_clips(FRAMES, mode="tsn", length=T, train=False)[0]
    everything = list(range(FRAMES))
    out = {}
    for name, fixed, view in (("mars 128x256", (128, 256), "ground"), ("g2a uav ~34x56", None, "aerial")):
        jpeg, video, encode = _samples(tracklets, fixed=fixed, view=view)
        row = {"encode_s_per_tracklet": round(encode, 4)}
        for storage, samples in (("jpeg", jpeg), ("video", video)):
            one, full = _time(samples, clip, repeats), _time(samples, everything, repeats)
            member = sum(len(v) for s in samples for k, v in s.items() if k != "json") / len(samples)
            row[storage] = {
                "bytes_per_tracklet": int(member),
                "clip_ms": round(one * 1000, 2),
                "all_ms": round(full * 1000, 2),
                "clip_over_all": round(one / full, 3),
            }
        mean, worst = _psnr(jpeg, video)
        row["video_psnr_db"] = {"mean": round(mean, 1), "min": round(worst, 1)}
        row["video_size_ratio"] = round(row["video"]["bytes_per_tracklet"] / row["jpeg"]["bytes_per_tracklet"], 3)
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracklets", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.tracklets, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.tracklets} tracklets of {FRAMES} frames, clip = TSN test T={T}; best of {args.repeats}")
    header = "shape            storage  bytes/tracklet  clip ms  all-64 ms  clip/all"
    print(header)
    for name, row in result.items():
        for storage in ("jpeg", "video"):
            r = row[storage]
            line = (
                f"{name:<16} {storage:<8} {r['bytes_per_tracklet']:>14,} {r['clip_ms']:>8} "
                f"{r['all_ms']:>10} {r['clip_over_all']:>9}"
            )
            print(line)
        print(
            f"{'':16} video: {row['video_size_ratio']:.3f}x the JPEG bytes, PSNR mean {row['video_psnr_db']['mean']} dB"
            f" (min {row['video_psnr_db']['min']}), encode {row['encode_s_per_tracklet'] * 1000:.1f} ms/tracklet"
        )


if __name__ == "__main__":
    main()

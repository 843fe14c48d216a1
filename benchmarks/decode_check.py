"""How much damage inside the compressed data ``convert --decode-check`` catches.

Takes JPEGs of a synthetic tree, damages their entropy-coded scan (the header and
the end marker stay intact, so the cheap structural check passes) in four ways, and
counts how many each detector rejects:

- bit flips: 1, 4 or 16 random bits of the scan flipped;
- zeroed block: 64 consecutive scan bytes set to 0;
- garbage run: 32 consecutive scan bytes replaced by random bytes;
- truncation: the scan cut at a random point, the end marker put back.

Detectors: Pillow's full decode (what ``--decode-check`` used before: libjpeg only
warns on most damage) and reiddata's ``decode_check`` (libjpeg-turbo through
simplejpeg with warnings as errors). Clean images must all pass (no false alarm).

    python benchmarks/decode_check.py [--images 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from reiddata import synth
from reiddata.jpeg import JpegError, decode_check, jpeg_size


def scan_range(data: bytes) -> tuple[int, int]:
    """Byte range of the entropy-coded data: after the SOS header, before the EOI marker."""
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    return start, data.rindex(b"\xff\xd9")


def damaged(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    start, end = scan_range(data)
    out = bytearray(data)
    if kind.startswith("flip"):
        for _ in range(int(kind[4:])):
            pos = int(rng.integers(start, end))
            out[pos] ^= 1 << int(rng.integers(8))
    elif kind == "zeros":
        pos = int(rng.integers(start, max(start + 1, end - 64)))
        out[pos : pos + 64] = bytes(min(64, end - pos))
    elif kind == "garbage":
        pos = int(rng.integers(start, max(start + 1, end - 32)))
        out[pos : pos + 32] = rng.integers(0, 256, min(32, end - pos), dtype=np.uint8).tobytes()
    elif kind == "truncate":
        cut = int(rng.integers(start + 1, end))
        out = out[:cut] + b"\xff\xd9"
    return bytes(out)


def pillow_rejects(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image.load()
    except Exception:
        return True
    return False


def reiddata_rejects(data: bytes) -> bool:
    try:
        jpeg_size(data)
        decode_check(data)
    except JpegError:
        return True
    return False


KINDS = ("flip1", "flip4", "flip16", "zeros", "garbage", "truncate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tree = synth("market1501", Path(tmp) / "tree", identities=12)
        files = sorted(tree.rglob("*.jpg"))[: args.images]
        clean = [f.read_bytes() for f in files]
    assert not any(reiddata_rejects(d) for d in clean), "a clean image was rejected"
    caught = {name: Counter() for name in ("pillow", "reiddata")}
    total = Counter()
    for data in clean:
        for kind in KINDS:
            bad = damaged(data, kind, rng)
            if bad == data:
                continue
            total[kind] += 1
            caught["pillow"][kind] += pillow_rejects(bad)
            caught["reiddata"][kind] += reiddata_rejects(bad)
    print(f"{len(clean)} clean images: 0 rejected by reiddata's check")
    print(f"{'damage':10} {'cases':>6} {'pillow':>8} {'reiddata':>9}")
    for kind in KINDS:
        print(f"{kind:10} {total[kind]:6d} {caught['pillow'][kind]:8d} {caught['reiddata'][kind]:9d}")
    n = sum(total.values())
    p, r = sum(caught["pillow"].values()), sum(caught["reiddata"].values())
    print(f"{'all':10} {n:6d} {p:8d} {r:9d}   catch rate: pillow {p / n:.1%}, reiddata {r / n:.1%}")


if __name__ == "__main__":
    main()

"""Benchmark: training-batch throughput, the torchreid way vs the shard readers.

    python benchmarks/load.py [--work DIR] [--batches N] [--workers 2]

On the MSMT17-sized tree of `benchmarks/convert.py` (126,441 JPEG files, built once
and cached in --work) and its conversion, each pipeline feeds DataLoader(num_workers
= --workers) batches of 64 train samples (P=16 x K=4 where a sampler applies),
decoded and resized to 256x128:

  (a) torchreid: one JPEG file per sample from the folder, PIL + torchvision
      Resize/ToTensor/Normalize (float32 in the workers), its RandomIdentitySampler
  (b) reiddata ShardDataset (one pread per sample) + IdentityBalancedSampler, OpenCV
      decode and resize, uint8 tensors (normalise on the GPU)
  (b') the same reader with (a)'s PIL/torchvision transform: the reader alone
  (b'') the reader with the official sampler (reiddata.RandomIdentitySampler) and the
      loader transform reidmodels trains with: PIL's bicubic resize (as the official
      pipelines resize), uint8 tensors, and (b)'s OpenCV resize beside it, same sampler
  (c) reiddata StreamingDataset (sequential tar reads, shuffle buffer), as (b)

Samples/s are measured over --batches batches after 5 warm-up batches, page cache
warm. Targets: (b) >= (a), (c) >= 1.5x (a).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import build_tree  # noqa: E402  (the tree of benchmarks/convert.py)

from reiddata import IdentityBalancedSampler, ShardDataset, StreamingDataset, convert  # noqa: E402
from reiddata import RandomIdentitySampler as RandomIdentitySamplerOfficial  # noqa: E402

BATCH, P, K = 64, 16, 4
SIZE = (256, 128)  # height, width
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def torchreid_transform():
    import torchvision.transforms as T

    return T.Compose([T.Resize(SIZE), T.ToTensor(), T.Normalize(MEAN, STD)])


def fast_transform(image: np.ndarray) -> torch.Tensor:
    import cv2

    resized = cv2.resize(image, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized).permute(2, 0, 1)


class FolderDataset(torch.utils.data.Dataset):
    """torchreid's ImageDataset: (path, pid) pairs, PIL read per item."""

    def __init__(self, items: list[tuple[str, int]], transform) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        path, pid = self.items[i]
        return {"image": self.transform(Image.open(path).convert("RGB")), "pid": pid}


class RandomIdentitySampler(torch.utils.data.Sampler):
    """torchreid.data.sampler.RandomIdentitySampler, restated: K-chunks of every pid's
    images (padded with replacement), P pids drawn at random while P have chunks left."""

    def __init__(self, pids: list[int], batch_size: int, k: int) -> None:
        self.batch_size, self.k, self.p = batch_size, k, batch_size // k
        self.index_dic = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_dic[pid].append(index)
        self.pids = list(self.index_dic)
        self.length = sum(len(v) + (-len(v)) % k if len(v) >= k else k for v in self.index_dic.values())

    def __iter__(self):
        chunks = defaultdict(list)
        for pid in self.pids:
            idxs = copy.deepcopy(self.index_dic[pid])
            if len(idxs) < self.k:
                idxs = list(np.random.choice(idxs, size=self.k, replace=True))
            random.shuffle(idxs)
            batch = []
            for idx in idxs:
                batch.append(idx)
                if len(batch) == self.k:
                    chunks[pid].append(batch)
                    batch = []
        available = copy.deepcopy(self.pids)
        out = []
        while len(available) >= self.p:
            for pid in random.sample(available, self.p):
                out.extend(chunks[pid].pop(0))
                if not chunks[pid]:
                    available.remove(pid)
        return iter(out)

    def __len__(self) -> int:
        return self.length


def _batches(loader):
    """Batches across epochs (an identity-balanced epoch is one pass over the identities)."""
    epoch = 0
    while True:
        for holder in (loader.batch_sampler, loader.dataset):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        yield from loader
        epoch += 1


def _rate(loader, batches: int) -> float:
    iterator = _batches(loader)
    for _ in range(5):  # warm-up: worker start, first reads
        next(iterator)
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(iterator)
        samples += len(batch["pid"])
    return samples / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reiddata-bench"))
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    tree = build_tree(work / "tree", 126_441) / "MSMT17_V1"
    shards = work / "shards-w2"
    if not (shards / "manifest.json").is_file():
        convert("msmt17", tree.parent, shards, workers=2, overwrite=True)
    lines = (tree / "list_train.txt").read_text().split("\n")
    items = [(str(tree / "train" / x.split()[0]), int(x.split()[1])) for x in lines if x.strip()]
    for path, _ in items:  # warm the page cache for (a) as the shards are warm
        Path(path).read_bytes()
    loader = dict(num_workers=args.workers, persistent_workers=True)  # epochs restart no workers
    runs = {}
    folder = FolderDataset(items, torchreid_transform())
    sampler = RandomIdentitySampler([pid for _, pid in items], BATCH, K)
    runs["a_torchreid"] = torch.utils.data.DataLoader(folder, batch_size=BATCH, sampler=sampler, **loader)
    mapped = ShardDataset(shards, "train", decode="numpy", transform=fast_transform)
    balanced = IdentityBalancedSampler(mapped.pids, p=P, k=K, seed=0)
    runs["b_map_style"] = torch.utils.data.DataLoader(mapped, batch_sampler=balanced, **loader)
    mapped_pil = ShardDataset(shards, "train", decode="pil", transform=torchreid_transform())
    runs["b_map_style_torchreid_transform"] = torch.utils.data.DataLoader(
        mapped_pil, batch_sampler=IdentityBalancedSampler(mapped_pil.pids, p=P, k=K, seed=0), **loader
    )
    from reidmodels.transforms import resize_to_uint8

    for name, transform in (("b_official_pil_bicubic", resize_to_uint8(SIZE)), ("b_official_opencv", fast_transform)):
        data = ShardDataset(shards, "train", decode="numpy", transform=transform)
        official = RandomIdentitySamplerOfficial(data.pids, p=P, k=K, seed=0)
        runs[name] = torch.utils.data.DataLoader(data, batch_sampler=official, **loader)
    stream = StreamingDataset(shards, "train", decode="numpy", transform=fast_transform, shuffle=2000)
    runs["c_streaming"] = torch.utils.data.DataLoader(stream, batch_size=BATCH, **loader)
    results = {}
    for name, run in runs.items():
        results[name] = round(_rate(run, args.batches), 1)
        print(f"{name:34s} {results[name]:>9,.1f} samples/s", flush=True)
    base = results["a_torchreid"]
    ratios = {name: round(rate / base, 2) for name, rate in results.items()}
    print("ratios to (a): " + ", ".join(f"{k} {v}x" for k, v in ratios.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"samples_per_s": results, "ratio_to_a": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: `reidmodels extract` against `evaluate`'s own feature pass, on the same items.

    python benchmarks/extract.py [--work DIR] [--identities 300] [--workers 2]

A synthetic Market-1501 (`reiddata synth`, --identities people) is converted; a tiny
CLIP-ReID (2 layers of width 64, 128x64 crops, one training step: the weights do not
change the cost) embeds its query and gallery images three ways, in one process, on
this CPU: `evaluate`'s feature pass (`extract_features` over the shards), `extract` of
the same images as a folder of JPEG files, and `extract` of the converted dataset.
Items per second (best of 2) and the largest difference from evaluate's features.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import cpu_train_config  # noqa: E402

from reiddata import ShardDataset, convert, open_dataset, synth  # noqa: E402
from reidmodels.engine import train  # noqa: E402
from reidmodels.evaluation.features import extract_features, test_rows  # noqa: E402
from reidmodels.extract import extract  # noqa: E402
from reidmodels.use import load  # noqa: E402


def best(run, repeat: int = 2) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "reidmodels-extract-bench"))
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.work)
    data = work / "data"
    if not (data / "manifest.json").is_file():
        convert("market1501", synth("market1501", work / "tree", identities=args.identities, overwrite=True), data)
    run = work / "run"
    if not (run / "checkpoint.pt").is_file():
        stages = {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}
        hparams = {"p": 4, "k": 2, "image_size": [128, 64], "stages": stages}
        train(cpu_train_config(data, run, hparams=hparams, max_steps_per_epoch=1))
    ds, model = open_dataset(data), load(run, device="cpu")
    rows = test_rows(ds)
    crops = work / "crops"
    if not crops.is_dir():
        crops.mkdir()
        reader = ShardDataset(ds, rows=rows, decode=None)
        for i in range(len(reader)):
            (crops / f"{reader.keys[i]}.jpg").write_bytes(reader.raw(i)["jpg"])
    recipe = model.info["recipe"]

    def evaluate_pass():
        features, _ = extract_features(
            model.method, ds, rows, recipe=recipe, facts=model.info["facts"], batch_size=64, workers=args.workers,
            device=model.device, clip_mode=None, clip_length=None,
        )  # fmt: skip
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    seconds = {}
    seconds["evaluate feature pass"], reference = best(evaluate_pass)
    out = work / "folder.parquet"
    seconds["extract, folder of JPEGs"], _ = best(
        lambda: extract(run, crops, out, workers=args.workers, overwrite=True, progress=False)
    )
    table = pq.read_table(out)
    by_key = dict(zip([p[: -len(".jpg")] for p in table.column("path").to_pylist()],
                      np.stack(table.column("feature").to_numpy(zero_copy_only=False))))  # fmt: skip
    folder = np.stack([by_key[k] for k in ShardDataset(ds, rows=rows, decode=None).keys])
    whole = work / "dataset.parquet"
    seconds["extract, converted dataset"], _ = best(
        lambda: extract(run, data, whole, workers=args.workers, overwrite=True, progress=False)
    )
    table = pq.read_table(whole)
    every = np.stack(table.column("feature").to_numpy(zero_copy_only=False))[rows]
    result = {
        "items": len(rows),
        "all_items": len(ds.index),
        "items_per_s": {
            "evaluate feature pass": round(len(rows) / seconds["evaluate feature pass"], 1),
            "extract, folder of JPEGs": round(len(rows) / seconds["extract, folder of JPEGs"], 1),
            "extract, converted dataset": round(len(ds.index) / seconds["extract, converted dataset"], 1),
        },
        "max_abs_diff_to_evaluate": {
            "folder": float(np.abs(folder - reference).max()),
            "dataset": float(np.abs(every - reference).max()),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

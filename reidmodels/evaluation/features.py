"""A trained model's test features: extracted once, split over ranks, kept as Parquet.

Under ``torchrun`` each rank extracts a contiguous run of whole batches (the same batches
one process would make, so the same numbers) and rank 0 gathers them in order. The
cache is a Parquet file any tool reads without reidmodels (pyarrow, polars, numpy):
one row per test item with its key, pid, camid, view, split and ``feature`` (a
fixed-size list of float32), plus ``prediction`` for methods that predict more
(attributes, a second inference mode); the file's metadata names the method,
checkpoint, dataset version and clip sampling it belongs to.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from ..inputs import Collate, model_inputs, shard_reader, transforms_for
from ..methods import Method

__all__ = ["cache_name", "extract_features", "read_feature_cache", "test_rows", "write_feature_cache"]

LABELS = ("key", "pid", "camid", "view", "split")


def test_rows(data) -> np.ndarray:
    """Index rows that some protocol queries or ranks (sorted)."""
    return np.unique(np.concatenate([np.concatenate([p.query, p.gallery]) for p in data.protocols.values()]))


def batch_share(items: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The item range of ``rank``: whole batches, contiguous, as even as batches allow."""
    batches = -(-items // batch_size)
    first, last = batches * rank // world, batches * (rank + 1) // world
    return min(first * batch_size, items), min(last * batch_size, items)


@torch.no_grad()
def _extract(model: Method, dataset, *, batch_size: int, workers: int, device: torch.device, collate: Collate):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    features, predictions = [], []
    for batch in loader:
        x = model_inputs(batch, device, stats=model.pixel_stats)
        feature, predicted = model.test_outputs(x, view=batch["view"].to(device), camid=batch["camid"].to(device))
        features.append(feature.float().cpu())
        if predicted is not None:
            predictions.append(predicted.cpu())
    return features, predictions


def _gather(parts: list[torch.Tensor], world: int, device: torch.device) -> torch.Tensor | None:
    """Rank 0 gets every rank's rows in rank order (padded to one length for the collective)."""
    mine = torch.cat(parts) if parts else None
    if world == 1:
        return mine
    width = torch.tensor([-1 if mine is None else mine.shape[1]], device=device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    if int(width) < 0:
        return None
    dtype = mine.dtype if mine is not None else torch.float32
    mine = mine if mine is not None else torch.zeros(0, int(width), dtype=dtype)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(mine)], device=device))
    longest = int(max(sizes))
    padded = torch.zeros(longest, int(width), dtype=mine.dtype, device=device)
    padded[: len(mine)] = mine.to(device)
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(n)] for g, n in zip(gathered, sizes)]).cpu()


def extract_features(
    model: Method,
    data,
    rows: np.ndarray,
    *,
    recipe: dict,
    facts: dict,
    batch_size: int,
    workers: int,
    device: torch.device,
    clip_mode: str | None,
    clip_length: int | None,
    rank: int = 0,
    world: int = 1,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The test features of ``rows`` (and predictions, or None) on rank 0; None elsewhere.

    Every rank must call it (under ``torchrun`` the ranks gather)."""
    first, last = batch_share(len(rows), batch_size, rank, world)
    transform = transforms_for(recipe, model.pixel_stats).test  # the pipeline's test resize
    dataset = shard_reader(
        data, rows=rows[first:last], transform=transform, train=False, clip_mode=clip_mode, clip_length=clip_length
    )
    collate = Collate(type(model), facts)  # the attribute vocabulary the model was built with
    features, predictions = _extract(
        model, dataset, batch_size=batch_size, workers=workers, device=device, collate=collate
    )
    features, predictions = _gather(features, world, device), _gather(predictions, world, device)
    if rank != 0:
        return None, None
    return features.numpy(), (None if predictions is None else predictions.numpy())


def cache_name(version: str, checkpoint: str, clip_mode: str | None, clip_length: int | None) -> str:
    """From validated values only: a 16-hex dataset version, our own checkpoint hash, a hash of the sampling."""
    sampling = hashlib.sha256(json.dumps([clip_mode, clip_length]).encode()).hexdigest()[:8]
    return f"{version}-{checkpoint}-{sampling}.parquet"


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).ravel()), values.shape[1])


def write_feature_cache(path: Path, data, rows: np.ndarray, features: np.ndarray, predictions, facts: dict) -> None:
    """The Parquet cache (written beside, then renamed: never half a file)."""
    index = data.index.take(pa.array(rows))
    columns = {name: index.column(name) for name in LABELS}
    columns["feature"] = _fixed(features.astype(np.float32))
    if predictions is not None:
        columns["prediction"] = _fixed(predictions)
    table = pa.table(columns).replace_schema_metadata({"reidmodels": json.dumps(facts, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_feature_cache(path: Path, data, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and predictions) from a cache, checked against the dataset's test rows."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: unreadable feature cache ({exc}); remove it to extract again") from None
    expected = data.index.column("key").take(pa.array(rows)).to_pylist()
    if "feature" not in table.column_names or table.column("key").to_pylist() != expected:
        raise ValueError(f"{path}: feature cache does not match {len(rows)} test items of the dataset; remove it")
    features = _unfixed(table, "feature", path).astype(np.float32)
    predictions = _unfixed(table, "prediction", path) if "prediction" in table.column_names else None
    return features, predictions


def _unfixed(table: pa.Table, name: str, path: Path) -> np.ndarray:
    array = table.column(name).combine_chunks()
    if not pa.types.is_fixed_size_list(array.type) or array.null_count:
        raise ValueError(f"{path}: column {name!r} is not a fixed-size list without nulls; remove the cache")
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)

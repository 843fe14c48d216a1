"""``reidmodels extract RUN INPUT OUT``: features of a folder of crops, of tracklet folders,
or of a converted dataset, as one Parquet file.

INPUT is
- a converted dataset (a folder with ``manifest.json``, or a URL): every sample, through
  ``evaluate``'s own feature pass (its views, cameras and clip sampling); rows carry
  ``key``, ``split``, ``pid``, ``camid`` and ``view``;
- for a video model, a folder of tracklet folders: each sub-folder holding files is one
  tracklet, its frames in name order; rows carry ``path`` (the sub-folder);
- otherwise a folder of crops, any nesting, files in name order; rows carry ``path``.

Files are decoded as the shard readers decode (OpenCV) and embedded exactly as
``reidmodels.load(run).embed`` does, batched over ``workers`` processes. A file that does
not decode is listed (``OUT.failed.txt`` and stderr) and skipped, never a crash halfway;
the command then exits 1 unless ``--skip-bad``. OUT is written whole or not at all.
The ``feature`` column is a fixed-size list (float32, or float16 with ``half``); the
file's metadata ``reidmodels`` holds the model's facts.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .use import Model, load

__all__ = ["ExtractResult", "extract"]


@dataclass
class ExtractResult:
    out: Path
    rows: int
    failed: list[tuple[str, str]]  # (path, why)
    seconds: float


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


class _Items(torch.utils.data.Dataset):
    """Decoded, resized pixels of each input (an image file, or a tracklet folder's frames); a failure is data."""

    def __init__(self, model: Model, entries: list, root: Path) -> None:
        self.model, self.entries, self.root = model, entries, root

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        entry = self.entries[i]
        try:
            if self.model.video:
                return i, self.model.clip([str(f) for f in entry], str(entry[0].parent)), None
            return i, self.model.pixels(str(entry), str(entry)), None
        except ValueError as exc:
            return i, None, str(exc)


def _collate(items):
    ok = [(i, x) for i, x, error in items if error is None]
    failed = [(i, error) for i, _, error in items if error is not None]
    pixels = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], pixels, failed


def _fixed(features: np.ndarray, half: bool) -> pa.Array:
    values = features.astype(np.float16 if half else np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), features.shape[1])


def _write(out: Path, columns: dict, facts: dict) -> None:
    table = pa.table(columns).replace_schema_metadata({"reidmodels": json.dumps(facts, sort_keys=True, default=str)})
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _from_dataset(model: Model, location: str, *, batch_size: int, workers: int) -> dict:
    from reiddata import open_dataset

    from .evaluation.features import extract_features

    data = open_dataset(location)
    rows = np.arange(len(data.index))
    recipe = model.info["recipe"]
    features, _ = extract_features(
        model.method, data, rows, recipe=recipe, facts=model.info["facts"], batch_size=batch_size, workers=workers,
        device=model.device, clip_mode=recipe["clip_mode"], clip_length=recipe["clip_length"],
    )  # fmt: skip
    features = features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)
    index = data.index
    columns = {c: index.column(c) for c in ("key", "split", "pid", "camid", "view")}
    return columns | {"feature": features}


def _entries(model: Model, root: Path) -> list:
    if model.video:
        tracklets = [d for d in sorted(root.rglob("*")) if d.is_dir() and any(f.is_file() for f in d.iterdir())]
        entries = [[f for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")] for d in tracklets]
        entries = [e for e in entries if e]
    else:
        entries = _files(root)
    if not entries:
        what = "tracklet folders (sub-folders of frames)" if model.video else "files"
        raise ValueError(f"{root}: no {what} to embed")
    return entries


def extract(
    run: str | Path,
    source: str | Path,
    out: str | Path,
    *,
    half: bool = False,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool | None = None,
) -> ExtractResult:
    """Embed ``source`` with the model of ``run`` into the Parquet file ``out`` (see the module)."""
    import time

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: already exists (pass --overwrite to replace it)")
    model = load(run, device=device)
    location = str(source)
    is_dataset = "://" in location or (Path(location) / "manifest.json").is_file()
    failed: list[tuple[str, str]] = []
    if is_dataset:
        columns = _from_dataset(model, location, batch_size=batch_size, workers=workers)
    else:
        root = Path(location)
        if not root.is_dir():
            raise ValueError(f"{root}: not a folder or a converted dataset")
        entries = _entries(model, root)
        columns, failed = _from_files(model, entries, root, batch_size=batch_size, workers=workers, progress=progress)
    n = len(columns["feature"])
    columns["feature"] = _fixed(np.asarray(columns["feature"], dtype=np.float32).reshape(n, -1), half)
    _write(out, columns, model.facts | {"source": location, "half": half})
    report = out.with_name(out.name + ".failed.txt")
    if failed:
        report.write_text("".join(f"{path}\t{why}\n" for path, why in failed))
    return ExtractResult(out, n, failed, round(time.perf_counter() - start, 2))


def _from_files(model: Model, entries: list, root: Path, *, batch_size: int, workers: int, progress) -> tuple:
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(
        _Items(model, entries, root), batch_size=batch_size, num_workers=workers, collate_fn=_collate
    )
    show = sys.stderr.isatty() if progress is None else progress
    kept, features, failed = [], [], []
    fields = model.fields(1)
    with tqdm(total=len(entries), unit="tracklet" if model.video else "img", disable=not show) as bar:
        for indices, pixels, errors in loader:
            failed += [(str(entries[i][0].parent if model.video else entries[i]), why) for i, why in errors]
            if pixels is not None:
                batch = {"frames": list(pixels.unbind(1))} if model.video else {"image": pixels}
                features.append(model.features(batch, {k: v.expand(len(indices)) for k, v in fields.items()}))
                kept += indices
            bar.update(len(indices) + len(errors))
    paths = [(entries[i][0].parent if model.video else entries[i]).relative_to(root).as_posix() for i in kept]
    dim = int(model.method.embed_dim)
    stacked = np.concatenate(features) if features else np.zeros((0, dim), dtype=np.float32)
    return {"path": pa.array(paths, type=pa.string()), "feature": stacked}, failed

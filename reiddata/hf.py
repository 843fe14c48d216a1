"""Export a split to a Hugging Face ``datasets.Dataset`` with typed columns.

Columns: ``key``, ``pid``, ``label``, ``camid``, ``view``; ``image`` (an ``Image``
feature holding the source JPEG bytes) or, for tracklets, ``frames`` (a sequence of
``Image``) and ``num_frames``; one ``ClassLabel`` column per attribute (its values in
schema order; null for samples without attributes) and one ``sid_<group>`` integer
column per attribute group.
"""

from __future__ import annotations

import json
from pathlib import Path

from .reader import ReidDataset, ShardDataset, open_dataset

__all__ = ["to_hf_dataset"]

RESERVED = {"key", "pid", "label", "camid", "view", "image", "frames", "num_frames"}


def _features(manifest: dict):
    from datasets import ClassLabel, Features, Image, Sequence, Value

    columns = {
        "key": Value("string"),
        "pid": Value("int64"),
        "label": Value("int64"),
        "camid": Value("int32"),
        "view": Value("string"),
    }
    if manifest.get("kind") == "video":
        columns["frames"] = Sequence(Image())
        columns["num_frames"] = Value("int32")
    else:
        columns["image"] = Image()
    schema = manifest.get("attributes")
    if schema:
        for attribute in schema["attributes"]:
            name = attribute["name"] if attribute["name"] not in RESERVED else f"attribute_{attribute['name']}"
            columns[name] = ClassLabel(names=attribute["values"])
        for group in schema["groups"]:
            columns[f"sid_{group['name']}"] = Value("int32")
    return Features(columns)


def _frames(members: dict[str, bytes], meta: dict) -> list:
    if "mp4" in members:
        from PIL import Image

        from .video import decode_video_frames

        frames = decode_video_frames(members["mp4"], range(meta["num_frames"]), meta["frame_sizes"])
        return [Image.fromarray(f) for f in frames]
    return [{"bytes": members[f"{i:04d}.jpg"], "path": None} for i in range(meta["num_frames"])]


def to_hf_dataset(dataset: ReidDataset | str | Path, split: str, *, cache_dir: str | Path | None = None):
    """The ``split`` as a ``datasets.Dataset`` (written to ``cache_dir`` or HF's cache)."""
    from datasets import Dataset

    data = dataset if isinstance(dataset, ReidDataset) else open_dataset(dataset)
    reader = ShardDataset(data, split, decode=None)
    features = _features(data.manifest)
    schema = data.manifest.get("attributes")

    def rows():
        for i in range(len(reader)):
            members = reader.raw(i)
            meta = json.loads(members["json"])
            row = {k: meta[k] for k in ("key", "pid", "label", "camid", "view")}
            if "num_frames" in meta:
                row["frames"], row["num_frames"] = _frames(members, meta), meta["num_frames"]
            else:
                row["image"] = {"bytes": members["jpg"], "path": None}
            if schema:
                values, sids = meta.get("attributes") or {}, meta.get("sid") or {}
                for attribute in schema["attributes"]:
                    name = attribute["name"] if attribute["name"] not in RESERVED else f"attribute_{attribute['name']}"
                    row[name] = values.get(attribute["name"])
                for group in schema["groups"]:
                    row[f"sid_{group['name']}"] = sids.get(group["name"])
            yield row

    # the fingerprint names the cached Arrow file: the dataset version and split identify it
    return Dataset.from_generator(
        rows,
        features=features,
        cache_dir=str(cache_dir) if cache_dir else None,
        gen_kwargs={},
        config_name=f"{data.manifest['source']}-{data.version}-{split}",
    )

"""Export a split to a Hugging Face ``datasets.Dataset`` with typed columns.

``convert`` also writes a dataset card (``README.md``) beside the shards of an image
dataset, so ``datasets.load_dataset(DATASET_DIR, split=...)`` reads the shards with
declared types instead of types guessed from the first five samples (a gallery
starting with distractors would lose every attribute). Tracklet datasets have a
variable number of frame members per sample, which the webdataset builder cannot
type: use ``to_hf_dataset`` for them.

``to_hf_dataset`` columns: ``key``, ``pid``, ``label``, ``camid``, ``view``; ``image`` (an ``Image``
feature holding the source JPEG bytes) or, for tracklets, ``frames`` (a sequence of
``Image``) and ``num_frames``; one ``ClassLabel`` column per attribute (its values in
schema order; null for samples without attributes) and one ``sid_<group>`` integer
column per attribute group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reader import ReidDataset

__all__ = ["dataset_card", "to_hf_dataset", "write_dataset_card"]

CARD = "README.md"

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

    from .locations import open_dataset
    from .reader import ReidDataset, ShardDataset

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


def _yaml_struct(fields: dict) -> list[dict]:
    """HF card feature YAML: ``{"name": dtype | nested dict}`` -> ``[{name, dtype | struct}]``."""
    out = []
    for name, kind in fields.items():
        out.append(
            {"name": name, "struct": _yaml_struct(kind)} if isinstance(kind, dict) else {"name": name, "dtype": kind}
        )
    return out


def card_features(manifest: dict) -> dict:
    """The webdataset builder's columns for one image sample: ``__key__``, ``__url__``, ``jpg``, ``json``."""
    meta = {
        "key": "string",
        "split": "string",
        "pid": "int64",
        "pid_raw": "string",
        "label": "int64",
        "camid": "int32",
        "view": "string",
        "roles": {name: "string" for name in manifest["protocol_order"]},
        "source": "string",
        "width": "int32",
        "height": "int32",
    }
    schema = manifest.get("attributes")
    if schema:
        meta["attributes"] = {a["name"]: "string" for a in schema["attributes"]}
        meta["sid"] = {g["name"]: "int32" for g in schema["groups"]}
    return {"__key__": "string", "__url__": "string", "jpg": "image", "json": meta}


def dataset_card(manifest: dict) -> str | None:
    """The ``README.md`` card of an image dataset (YAML ``configs`` + ``dataset_info``); None for tracklets."""
    import yaml

    if manifest["kind"] != "image":
        return None
    splits = manifest["split_order"]
    header = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{s}-*.tar"} for s in splits],
            }
        ],
        "dataset_info": {"features": _yaml_struct(card_features(manifest))},
    }
    counts = ", ".join(f"{s} {manifest['splits'][s]['samples']}" for s in splits)
    return (
        "---\n"
        + yaml.safe_dump(header, sort_keys=False, default_flow_style=False)
        + "---\n\n"
        + f"# {manifest['source']} ({manifest['variant']}), reiddata version {manifest['version']}\n\n"
        + f"Converted by reiddata: {counts} samples. Each sample is `KEY.jpg` (the source bytes) and\n"
        + "`KEY.json` (pid, camid, view, protocol roles, attributes and SIDs; `null` where a sample has\n"
        + "none). `manifest.json` holds the protocols, the attribute schema and the shard hashes.\n"
        + "Read it with `datasets.load_dataset(THIS_FOLDER, split=...)`, webdataset, wids or reiddata.\n"
    )


def write_dataset_card(directory: Path, manifest: dict) -> None:
    card = dataset_card(manifest)
    if card is not None:
        (Path(directory) / CARD).write_text(card)

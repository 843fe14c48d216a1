"""``reiddata convert``: a source tree -> one versioned, immutable shard dataset."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from . import video
from ._version import __version__
from .attributes import AttributeSchema, AttributeTable, read_attribute_file
from .errors import ReidDataError, bad_input
from .hf import write_dataset_card
from .manifest import is_dataset
from .output import atomic_output, check_output
from .sources import Parsed, Protocol, Source, get_source
from .writer import (
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    Item,
    ShardPlan,
    content_version,
    manifest_digests,
    write_index,
    write_manifest,
    write_shards,
    write_wids,
)

__all__ = ["convert", "DEFAULT_SHARD_SIZE", "find_attribute_file"]

DEFAULT_SHARD_SIZE = 5000  # samples per shard: ~25-100 MB of person crops
KEY_DIGITS = 7
DATASET = "a reiddata dataset (a folder with our manifest.json)"
STORAGES = ("jpeg", "video")


def find_attribute_file(base: Path, schema: AttributeSchema) -> Path | None:
    """The attribute file next to the data: in the tree, its ``attribute/`` or its parent."""
    for folder in (base, base / "attribute", base.parent, base.parent / "attribute"):
        for name in schema.filenames:
            if (folder / name).is_file():
                return folder / name
    return None


def _load_attributes(source: Source, parsed: Parsed, attributes: Path | None) -> AttributeTable | None:
    schema = source.attributes
    if schema is None:
        if attributes is not None:
            raise bad_input(attributes, f"{source.name} has no attribute schema", "drop --attributes")
        return None
    path = attributes if attributes is not None else find_attribute_file(parsed.base, schema)
    if path is None:
        return None
    if not Path(path).is_file():
        raise bad_input(path, "attribute file not found")
    return read_attribute_file(Path(path), schema)


def _build_items(source: Source, parsed: Parsed, table: AttributeTable | None) -> list[Item]:
    """Sample metadata in split order, keys = split + ordinal over the sorted paths."""
    by_split: dict[str, list] = defaultdict(list)
    for record in parsed.records:
        by_split[record.split].append(record)
    for split in source.splits:
        if not by_split.get(split):
            raise bad_input(parsed.base, f"split {split!r} is empty", "check the tree against `reiddata sources`")
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in parsed.records if r.trainable}))}
    schema = source.attributes
    base = str(parsed.base)
    items = []
    for split in source.splits:
        for ordinal, record in enumerate(sorted(by_split[split], key=lambda r: r.path)):
            attributes: dict[str, str] | None = None  # null, not {}: readers type the field from any sample
            sid: dict[str, int] | None = None
            if table is not None and schema is not None and record.attribute_id is not None:
                part = record.attribute_part or split
                attributes = table.lookup(part, record.attribute_id, image=record.path)
                sid = schema.sids(attributes)
            meta = {
                "key": f"{split}_{ordinal:0{KEY_DIGITS}d}",
                "split": split,
                "pid": record.pid,
                "pid_raw": record.pid_raw,
                "label": labels.get(record.pid, -1) if record.trainable else -1,
                "camid": record.camid,
                "view": record.view,
                "roles": dict(record.roles),
                "attributes": attributes,
                "sid": sid,
                "source": record.path,
            }
            if record.frames:  # a tracklet: its frame count and names, in order
                meta["num_frames"] = len(record.frames)
                meta["frames"] = [f.rsplit("/", 1)[-1] for f in record.frames]
            files = record.frames or (record.path,)
            items.append(Item(meta, tuple(f"{base}/{f}" for f in files)))
    return items


def _plan(items: Sequence[Item], shard_size: int, decode_check: bool, storage: str) -> list[ShardPlan]:
    plans = []
    by_split: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_split[item.meta["split"]].append(item)
    for split, split_items in by_split.items():
        for n, start in enumerate(range(0, len(split_items), shard_size)):
            chunk = tuple(split_items[start : start + shard_size])
            plans.append(ShardPlan(f"{split}-{n:06d}.tar", split, chunk, decode_check, storage))
    return plans


def index_schema(source: Source, protocols: Sequence[Protocol], with_attributes: bool) -> pa.Schema:
    fields = [
        ("key", pa.string()),
        ("split", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("pid", pa.int64()),
        ("pid_raw", pa.string()),
        ("label", pa.int64()),
        ("camid", pa.int32()),
        ("view", pa.string()),
        ("source", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("roles", pa.struct([(p.name, pa.string()) for p in protocols])),
    ]
    if source.kind == "video":
        fields.append(("num_frames", pa.int32()))
        fields.append(("frames", pa.list_(pa.string())))
        fields.append(("frame_sizes", pa.list_(pa.list_(pa.int32()))))
    schema = source.attributes
    if with_attributes and schema is not None:
        fields.append(("attributes", pa.struct([(a.name, pa.string()) for a in schema.attributes])))
        fields.append(("sid", pa.struct([(g, pa.int32()) for g, _ in schema.groups])))
    return pa.schema(fields)


def index_row(meta: dict, with_attributes: bool, **placement: object) -> dict:
    """The index row of a sample: its metadata, placement, and null attributes when it has none."""
    row = dict(meta, **placement)
    if with_attributes:
        row["attributes"] = row["attributes"] or None  # distractors: no attributes
        row["sid"] = row["sid"] or None
    else:
        del row["attributes"], row["sid"]
    return row


def split_summary(rows: list[dict], shards: list[dict]) -> dict:
    """A split's manifest entry from its index rows and shard entries (``verify`` recomputes it)."""
    views = Counter(r["view"] for r in rows)
    return {
        "samples": len(rows),
        "ids": len({r["pid"] for r in rows}),
        "cameras": sorted({r["camid"] for r in rows}),
        "views": dict(sorted(views.items())),
        "frames": sum(r.get("num_frames", 1) for r in rows),
        "shards": shards,
    }


def protocol_summary(protocols: Sequence[Protocol], rows: list[dict]) -> dict:
    """The manifest's protocols from the index rows (``verify`` recomputes the counts)."""
    out = {}
    for protocol in protocols:
        sides = {}
        for role in ("query", "gallery"):
            members = [r for r in rows if r["roles"].get(protocol.name) == role]
            sides[role] = {
                "role": role,
                "splits": sorted({r["split"] for r in members}),
                "samples": len(members),
                "ids": len({r["pid"] for r in members}),
                "views": dict(sorted(Counter(r["view"] for r in members).items())),
            }
        out[protocol.name] = {"description": protocol.description, "match": protocol.match, **sides}
    return out


def convert(
    source: str,
    root: Path,
    out: Path,
    *,
    attributes: Path | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    overwrite: bool = False,
    decode_check: bool = False,
    storage: str = "jpeg",
    progress: bool = False,
) -> dict:
    """Convert the ``source`` tree at ``root`` into a shard dataset at ``out``.

    ``storage`` (tracklet sources): ``jpeg`` keeps each frame's bytes as a member,
    ``video`` encodes each tracklet as one MP4 member (lossy, much smaller).
    Returns the manifest. Raises :class:`ReidDataError` on input that breaks the
    source's rules; then nothing is left at ``out`` (or the old ``out`` is kept).
    """
    spec = get_source(source)
    if shard_size < 1:
        raise ReidDataError(f"--shard-size must be at least 1, got {shard_size}")
    if storage not in STORAGES:
        raise ReidDataError(f"--store must be one of {', '.join(STORAGES)}, got {storage!r}")
    if storage == "video" and spec.kind != "video":
        raise ReidDataError(f"--store video is for tracklet sources; {spec.name} holds images")
    root, out = Path(root), Path(out)
    attribute_inputs = [] if attributes is None else [Path(attributes)]
    # checked before the (long) parse, and again by atomic_output just before writing
    safety = {"inputs": [root, *attribute_inputs], "overwrite": overwrite, "is_ours": is_dataset, "what": DATASET}
    check_output(out, **safety)
    parsed = spec.parse(root)
    table = _load_attributes(spec, parsed, attributes)
    items = _build_items(spec, parsed, table)
    plans = _plan(items, shard_size, decode_check, storage)
    protocols = parsed.protocols or spec.protocols
    with atomic_output(out, **safety) as tmp:
        bar = _progress_bar(len(items), f"convert {spec.name}") if progress else None
        try:
            results = write_shards(tmp, plans, workers=workers, on_progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        with_attributes = table is not None
        rows = [
            index_row(item.meta, with_attributes, shard=plan.name, offset=offset, size=size, **added)
            for plan, result in zip(plans, results)
            for item, (offset, size, added) in zip(plan.items, result.placed)
        ]
        index_table = write_index(tmp / INDEX, rows, index_schema(spec, protocols, with_attributes))
        by_split = defaultdict(list)
        for result, plan in zip(results, plans):
            by_split[plan.split].append(
                {"name": result.name, "samples": len(result.placed), "bytes": result.bytes, "sha256": result.sha256}
            )
        for split, shards in by_split.items():
            write_wids(tmp, split, shards, dataset=spec.name)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": spec.kind,
            "source": spec.name,
            "variant": parsed.variant,
            "reiddata_version": __version__,
            "options": {
                "shard_size": shard_size,
                "storage": storage if spec.kind == "video" else "jpeg",
                "video": {"codec": video.CODEC, "fps": video.FPS, "member": video.EXTENSION}
                if storage == "video"
                else None,
                "attributes": None if table is None else {"file": table.path.name, "sha256": table.sha256},
            },
            "index": {"file": INDEX, "rows": len(rows)},
            "split_order": list(spec.splits),
            "splits": {
                split: split_summary([r for r in rows if r["split"] == split], by_split[split]) for split in spec.splits
            },
            "protocols": protocol_summary(protocols, rows),
            "protocol_order": [p.name for p in protocols],
            "camera_views": {str(c): v for c, v in sorted(spec.camera_views.items())},
            "attributes": None if table is None or spec.attributes is None else spec.attributes.to_json(),
            "attribute_status": _attribute_status(spec, table),
            "anomalies": dict(sorted(table.anomalies.items())) if table else {},
            "dropped": dict(sorted(parsed.dropped.items())),
            "ignored": dict(sorted(parsed.ignored.items())),
        }
        manifest["digests"] = manifest_digests(manifest)
        manifest["version"] = content_version({r.name: r.sha256 for r in results}, index_table, manifest["digests"])
        write_dataset_card(tmp, manifest)
        write_manifest(tmp, manifest)  # last: its presence marks a complete dataset
    return manifest


def _attribute_status(source: Source, table: AttributeTable | None) -> str:
    """Why a dataset has attributes or not, in words for ``stats`` and users."""
    if source.attributes is None:
        return f"none: {source.name} has no attribute labels"
    if table is None:
        return f"not found: no {' or '.join(source.attributes.filenames)} next to the data and none given"
    return f"labelled: {table.path.name}"


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", mininterval=0.5)

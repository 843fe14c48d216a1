"""``reiddata convert``: a source tree -> one versioned, immutable shard dataset."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from . import video
from ._version import __version__
from .attributes import AttributeSchema, AttributeTable, read_attribute_file
from .defaults import DEFAULT_SHARD_SIZE
from .distractors import DISTRACTOR_CAMERA, add_distractors
from .distractors import SPLIT as DISTRACTOR_SPLIT
from .errors import ReidDataError, bad_input
from .hf import write_dataset_card
from .manifest import is_dataset
from .output import atomic_output, check_output
from .sources import Parsed, Protocol, Record, Source, get_source
from .writer import (
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    Item,
    ShardPlan,
    ShardResult,
    content_version,
    manifest_digests,
    placement_text,
    shard_writers,
    write_index,
    write_manifest,
    write_shard,
    write_wids,
)

__all__ = ["convert", "DEFAULT_SHARD_SIZE", "find_attribute_file"]

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


@dataclass(frozen=True)
class ShardJob:
    """One shard for a writer process: its samples as parsed records. The worker builds
    their metadata, writes the tar and returns the shard's index rows as an Arrow batch,
    so the per-sample work runs in parallel and the main process only parses."""

    name: str  # e.g. "train-000000.tar"
    split: str
    records: tuple[Record, ...]
    first: int  # ordinal of the first record within its split (keys = split + ordinal)
    labels: dict[int, int]  # train label of each pid of these records
    attributes: tuple[tuple[dict | None, dict | None], ...] | None  # (values, sids) per record
    base: str  # the parsed base folder, with a trailing slash
    schema: pa.Schema  # of the index
    decode_check: bool
    storage: str


def _jobs(
    source: Source,
    parsed: Parsed,
    table: AttributeTable | None,
    schema: pa.Schema,
    *,
    shard_size: int,
    decode_check: bool,
    storage: str,
    splits: tuple[str, ...],
    bases: dict[str, Path],
) -> Iterator[ShardJob]:
    """The shards to write, in split order, records sorted by path. Lazy, so handing out
    the first shards overlaps preparing the rest; every check that needs no file (empty
    splits, attribute lookups) runs here, in the main process."""
    by_split: dict[str, list[Record]] = defaultdict(list)
    for record in parsed.records:
        by_split[record.split].append(record)
    for split in splits:
        if not by_split.get(split):
            raise bad_input(parsed.base, f"split {split!r} is empty", "check the tree against `reiddata sources`")
    labels = {pid: i for i, pid in enumerate(sorted({r.pid for r in parsed.records if r.trainable}))}
    for split in splits:
        records = sorted(by_split[split], key=lambda r: r.path)
        for n, start in enumerate(range(0, len(records), shard_size)):
            chunk = tuple(records[start : start + shard_size])
            yield ShardJob(
                name=f"{split}-{n:06d}.tar",
                split=split,
                records=chunk,
                first=start,
                labels={r.pid: labels[r.pid] for r in chunk if r.trainable},
                attributes=None if table is None else tuple(_attributes(r, table, source.attributes) for r in chunk),
                base=f"{bases.get(split, parsed.base)}/",
                schema=schema,
                decode_check=decode_check,
                storage=storage,
            )


def _attributes(record: Record, table: AttributeTable, schema: AttributeSchema | None) -> tuple:
    """(values, sids) of a record's identity; (None, None) for one without (distractors)."""
    if schema is None or record.attribute_id is None:
        return None, None
    values = table.lookup(record.attribute_part or record.split, record.attribute_id, image=record.path)
    return values, schema.sids(values)


def _item(job: ShardJob, i: int) -> Item:
    record = job.records[i]
    attributes, sid = job.attributes[i] if job.attributes else (None, None)  # null, not {}: readers type the field
    meta = {
        "key": f"{job.split}_{job.first + i:0{KEY_DIGITS}d}",
        "split": record.split,
        "pid": record.pid,
        "pid_raw": record.pid_raw,
        "label": job.labels.get(record.pid, -1) if record.trainable else -1,
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
        return Item(meta, tuple(job.base + f for f in record.frames))
    return Item(meta, (job.base + record.path,))


def write_job(directory: Path, job: ShardJob) -> tuple[ShardResult, pa.RecordBatch, bytes]:
    """In a writer process: the shard's metadata, its tar, its index rows and their
    placement text (the version hashes it; built here, in parallel)."""
    items = tuple(_item(job, i) for i in range(len(job.records)))
    result = write_shard(directory, ShardPlan(job.name, job.split, items, job.decode_check, job.storage))
    with_attributes = "attributes" in job.schema.names
    rows = [
        index_row(item.meta, with_attributes, shard=job.name, offset=offset, size=size, **added)
        for item, (offset, size, added) in zip(items, result.placed)
    ]
    keys = [item.meta["key"] for item in items]
    offsets, sizes = [p[0] for p in result.placed], [p[1] for p in result.placed]
    placement = placement_text(keys, [job.name] * len(items), offsets, sizes)
    return result, pa.RecordBatch.from_pylist(rows, schema=job.schema), placement


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


def _summary_rows(records: Sequence[Record]) -> dict[str, list[dict]]:
    """Per split, what split_summary and protocol_summary read of each index row, from the
    records the rows are made of (one row per record)."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        rows[r.split].append(
            {"split": r.split, "pid": r.pid, "camid": r.camid, "view": r.view, "roles": dict(r.roles)}
            | ({"num_frames": len(r.frames)} if r.frames else {})
        )
    return rows


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
            roles = ("query", "gallery") if role == "gallery" and protocol.query_in_gallery else (role,)
            members = [r for r in rows if r["roles"].get(protocol.name) in roles]
            sides[role] = {
                "role": role,
                "splits": sorted({r["split"] for r in members}),
                "samples": len(members),
                "ids": len({r["pid"] for r in members}),
                "views": dict(sorted(Counter(r["view"] for r in members).items())),
            }
        out[protocol.name] = {"description": protocol.description, "match": protocol.match, **sides}
        if protocol.query_in_gallery:  # only when set: other datasets' manifests (and versions) stay as they were
            out[protocol.name]["query_in_gallery"] = True
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
    distractors: Path | None = None,
) -> dict:
    """Convert the ``source`` tree at ``root`` into a shard dataset at ``out``.

    ``storage`` (tracklet sources): ``jpeg`` keeps each frame's bytes as a member,
    ``video`` encodes each tracklet as one MP4 member (lossy, much smaller).
    ``distractors``: a folder of unlabeled JPEG crops added as the ``distractors`` split,
    each protocol P getting a twin ``P-distractors`` (``reiddata.distractors``).
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
    if distractors is not None and spec.kind != "image":
        raise ReidDataError(f"--distractors is for image sources; {spec.name} holds tracklets")
    attribute_inputs = [] if attributes is None else [Path(attributes)]
    attribute_inputs += [] if distractors is None else [Path(distractors)]
    # checked before the (long) parse, and again by atomic_output just before writing
    safety = {"inputs": [root, *attribute_inputs], "overwrite": overwrite, "is_ours": is_dataset, "what": DATASET}
    check_output(out, **safety)
    with shard_writers(workers) as write_all:  # the writers start up while the source is parsed
        parsed = spec.parse(root)
        table = _load_attributes(spec, parsed, attributes)
        protocols, splits, bases = parsed.protocols or spec.protocols, spec.splits, {}
        camera_views = dict(spec.camera_views)
        if distractors is not None:
            parsed, protocols = add_distractors(parsed, protocols, Path(distractors), set(camera_views.values()))
            splits, bases = (*splits, DISTRACTOR_SPLIT), {DISTRACTOR_SPLIT: Path(distractors)}
            camera_views[DISTRACTOR_CAMERA] = next(iter(set(spec.camera_views.values())))
        schema = index_schema(spec, protocols, with_attributes=table is not None)
        jobs = _jobs(
            spec, parsed, table, schema, shard_size=shard_size, decode_check=decode_check, storage=storage,
            splits=splits, bases=bases,
        )  # fmt: skip
        with atomic_output(out, **safety) as tmp, ThreadPoolExecutor(1) as beside:
            counted = beside.submit(_summary_rows, parsed.records)  # while the writers work
            bar = _progress_bar(len(parsed.records), f"convert {spec.name}") if progress else None
            results: list[ShardResult] = []
            batches: list[pa.RecordBatch] = []
            placements: list[bytes] = []
            by_split = defaultdict(list)
            try:
                for job, (result, batch, placement) in write_all(tmp, jobs, write_job):
                    results.append(result)
                    batches.append(batch)
                    placements.append(placement)
                    by_split[job.split].append(
                        {
                            "name": result.name,
                            "samples": len(result.placed),
                            "bytes": result.bytes,
                            "sha256": result.sha256,
                        }
                    )
                    if bar:
                        bar.update(len(result.placed))
            finally:
                if bar:
                    bar.close()
            index_table = write_index(tmp / INDEX, pa.Table.from_batches(batches, schema=schema).combine_chunks())
            counts = counted.result()
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
                "index": {"file": INDEX, "rows": index_table.num_rows},
                "split_order": list(splits),
                "splits": {split: split_summary(counts[split], by_split[split]) for split in splits},
                "protocols": protocol_summary(protocols, [row for split in splits for row in counts[split]]),
                "protocol_order": [p.name for p in protocols],
                "camera_views": {str(c): v for c, v in sorted(camera_views.items())},
                "attributes": None if table is None or spec.attributes is None else spec.attributes.to_json(),
                "attribute_status": _attribute_status(spec, table),
                "anomalies": dict(sorted(table.anomalies.items())) if table else {},
                "dropped": dict(sorted(parsed.dropped.items())),
                "ignored": dict(sorted(parsed.ignored.items())),
            }
            manifest["digests"] = manifest_digests(manifest)
            hashes, placement = {r.name: r.sha256 for r in results}, b"".join(placements)
            manifest["version"] = content_version(hashes, index_table, manifest["digests"], placement=placement)
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

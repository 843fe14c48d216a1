"""What a conversion is made of, below ``convert`` and above the shard writer: the index
schema and rows, one job per shard (run in the writer processes: ``write_job``), and the
counts the manifest states, which ``verify`` recomputes from the index.

Imports run one way: ``convert`` -> ``jobs`` -> ``writer``; ``verify`` -> ``jobs``. The
writer processes load this module (``shard_writers(preload=...)``), never ``convert``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .attributes import AttributeSchema, AttributeTable
from .errors import bad_input
from .sources import Parsed, Protocol, Record, Source
from .writer import Item, ShardPlan, ShardResult, placement_text, write_shard

__all__ = [
    "KEY_DIGITS",
    "ShardJob",
    "index_row",
    "index_schema",
    "make_jobs",
    "protocol_summary",
    "split_summary",
    "summary_rows",
    "write_job",
]

KEY_DIGITS = 7


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


def make_jobs(
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


def summary_rows(records: Sequence[Record]) -> dict[str, list[dict]]:
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

"""One job per shard, below ``conversion`` and above the shard writer: the samples of a
shard as parsed records, made into items and index rows in the writer processes
(``write_job``).

Imports run one way: ``conversion`` -> ``jobs`` -> ``writer`` -> ``shard_format``. The
writer processes load this module (``shard_writers(preload=...)``), never ``conversion``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .attributes import AttributeSchema, AttributeTable
from .errors import bad_input
from .shard_format import index_row, placement_text
from .sources import Parsed, Record, Source
from .writer import Item, ShardPlan, ShardResult, write_shard

__all__ = ["KEY_DIGITS", "ShardJob", "make_jobs", "write_job"]

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

"""``reiddata convert``: a source tree -> one versioned, immutable shard dataset.

Parse the source, plan its shards (``jobs``), write them in parallel (``writer``), then
the index, the wids lists and the manifest (``shard_format``), last, into a hidden
folder renamed into place (``output``)."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from .jobs import make_jobs, write_job
from .manifest import is_dataset
from .output import atomic_output, check_output
from .shard_format import INDEX, finish_manifest, index_schema, protocol_summary, split_summary, summary_rows
from .sources import Parsed, Source, get_source
from .writer import ShardResult, shard_writers, write_index, write_manifest, write_wids

__all__ = ["convert", "DEFAULT_SHARD_SIZE", "find_attribute_file"]

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
    if parsed.attributes is not None:  # a table source: its own columns
        if attributes is not None:
            raise bad_input(attributes, f"{source.name} carries its attributes in its table", "drop --attributes")
        return parsed.attributes
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


def convert(
    source: str | Source,
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
    ``source``: a registered name, or a ``Source`` (``reiddata.custom``: a table, a folder).
    Returns the manifest. Raises :class:`ReidDataError` on input that breaks the
    source's rules; then nothing is left at ``out`` (or the old ``out`` is kept).
    """
    spec = source if isinstance(source, Source) else get_source(source)
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
    # the writers start up (importing the job code) while the source is parsed
    with shard_writers(workers, preload="reiddata.jobs") as write_all:
        plan = _plan(spec, root, attributes=attributes, distractors=distractors)
        labelled = spec.attributes if plan.table is not None else None
        schema = index_schema(spec.kind, [p.name for p in plan.protocols], labelled)
        jobs = make_jobs(
            spec, plan.parsed, plan.table, schema, shard_size=shard_size, decode_check=decode_check, storage=storage,
            splits=plan.splits, bases=plan.bases,
        )  # fmt: skip
        with atomic_output(out, **safety) as tmp, ThreadPoolExecutor(1) as beside:
            counted = beside.submit(summary_rows, plan.parsed.records)  # while the writers work
            bar = _progress_bar(len(plan.parsed.records), f"convert {spec.name}") if progress else None
            written = _write_shards(tmp, write_all, jobs, bar)
            index_table = write_index(
                tmp / INDEX, pa.Table.from_batches(written.batches, schema=schema).combine_chunks()
            )
            for split, shards in written.by_split.items():
                write_wids(tmp, split, shards, dataset=spec.name)
            options = {"shard_size": shard_size, "storage": storage}
            fields = _manifest_fields(spec, plan, counted.result(), written.by_split, index_table, options)
            hashes = {r.name: r.sha256 for r in written.results}
            manifest = finish_manifest(fields, hashes, index_table, placement=b"".join(written.placements))
            write_dataset_card(tmp, manifest)
            write_manifest(tmp, manifest)  # last: its presence marks a complete dataset
    return manifest


@dataclass(frozen=True)
class _Plan:
    """What a conversion writes, once the source is parsed: its records (distractors
    included), attribute table, protocols, splits, and camera views."""

    parsed: Parsed
    table: AttributeTable | None
    protocols: tuple
    splits: tuple[str, ...]
    bases: dict
    camera_views: dict


def _plan(spec: Source, root: Path, *, attributes: Path | None, distractors: Path | None) -> _Plan:
    parsed = spec.parse(root)
    table = _load_attributes(spec, parsed, attributes)
    protocols, splits, bases = parsed.protocols or spec.protocols, spec.splits, {}
    camera_views = dict(spec.camera_views)
    if distractors is not None:
        parsed, protocols = add_distractors(parsed, protocols, Path(distractors), set(camera_views.values()))
        splits, bases = (*splits, DISTRACTOR_SPLIT), {DISTRACTOR_SPLIT: Path(distractors)}
        camera_views[DISTRACTOR_CAMERA] = next(iter(set(spec.camera_views.values())))
    return _Plan(parsed, table, tuple(protocols), tuple(splits), bases, camera_views)


@dataclass
class _Written:
    """The writers' results, in job order: shards, index batches, placement texts, manifest entries per split."""

    results: list[ShardResult] = field(default_factory=list)
    batches: list[pa.RecordBatch] = field(default_factory=list)
    placements: list[bytes] = field(default_factory=list)
    by_split: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))


def _write_shards(tmp: Path, write_all, jobs, bar) -> _Written:
    written = _Written()
    try:
        for job, (result, batch, placement) in write_all(tmp, jobs, write_job):
            written.results.append(result)
            written.batches.append(batch)
            written.placements.append(placement)
            entry = {"name": result.name, "samples": len(result.placed), "bytes": result.bytes, "sha256": result.sha256}
            written.by_split[job.split].append(entry)
            if bar:
                bar.update(len(result.placed))
    finally:
        if bar:
            bar.close()
    return written


def _manifest_fields(spec: Source, plan: _Plan, counts: dict, by_split: dict, index: pa.Table, options: dict) -> dict:
    """The manifest of a conversion, before ``finish_manifest`` adds the format, digests and version."""
    table, splits = plan.table, plan.splits
    video_options = {"codec": video.CODEC, "fps": video.FPS, "member": video.EXTENSION}
    return {
        "kind": spec.kind,
        "source": spec.name,
        "variant": plan.parsed.variant,
        "reiddata_version": __version__,
        "options": {
            "shard_size": options["shard_size"],
            "storage": options["storage"] if spec.kind == "video" else "jpeg",
            "video": video_options if options["storage"] == "video" else None,
            "attributes": None if table is None else {"file": table.path.name, "sha256": table.sha256},
        },
        "index": {"file": INDEX, "rows": index.num_rows},
        "split_order": list(splits),
        "splits": {split: split_summary(counts[split], by_split[split]) for split in splits},
        "protocols": protocol_summary(plan.protocols, [row for split in splits for row in counts[split]]),
        "protocol_order": [p.name for p in plan.protocols],
        "camera_views": {str(c): v for c, v in sorted(plan.camera_views.items())},
        "attributes": None if table is None or spec.attributes is None else spec.attributes.to_json(),
        "attribute_status": _attribute_status(spec, table),
        "anomalies": dict(sorted(table.anomalies.items())) if table else {},
        "dropped": dict(sorted(plan.parsed.dropped.items())),
        "ignored": dict(sorted(plan.parsed.ignored.items())),
    }


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

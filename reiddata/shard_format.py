"""The shard format, in one place: what every writer writes and every reader checks.

A converted dataset is a folder (or a bucket prefix) holding ``<split>-NNNNNN.tar``
shards, ``index.parquet``, a ``<split>.wids.json`` list per split and ``manifest.json``
(written last). This module holds the rules and the bytes of that format: its name and
version, the names a dataset may use, canonical JSON, the tar headers (written and
read), the index schema and rows, the wids lists, the manifest's counts, digests and
content version. It imports nothing of reiddata but its errors and the attribute schema, so the writer
(``writer``, ``jobs``, ``conversion``) and the readers (``manifest``, ``reader``,
``stream``, ``verify``) both stand on it and never on each other.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import pyarrow as pa

from .attributes import AttributeSchema
from .errors import ReidDataError

__all__ = [
    "BLOCK",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX",
    "KINDS",
    "MANIFEST",
    "MATCH_RULES",
    "VIEWS",
    "canonical_json",
    "content_version",
    "finish_manifest",
    "index_row",
    "index_schema",
    "manifest_bytes",
    "manifest_digests",
    "placement_text",
    "protocol_summary",
    "read_members",
    "shard_name_ok",
    "split_summary",
    "summary_rows",
    "tar_header",
    "wids_bytes",
]

FORMAT = "reiddata-shards"
FORMAT_VERSION = 2  # 2: null attributes, manifest digests in the version, dataset card
MANIFEST = "manifest.json"
INDEX = "index.parquet"

# --- names: nothing read from a dataset becomes a path before it passes these ---------

SPLIT = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PROTOCOL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
VERSION = re.compile(r"^[0-9a-f]{16}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
KINDS = ("image", "video")
MATCH_RULES = ("camera", "view")  # a protocol's rule: same person on the same camera / view is not a match
VIEWS = ("aerial", "ground", "wearable")


def shard_name_ok(name: object, split: str) -> bool:
    """Whether ``name`` is ``<split>-NNNNNN.tar``: the only file names a dataset may give us."""
    return isinstance(name, str) and re.fullmatch(rf"{re.escape(split)}-\d{{6}}\.tar", name) is not None


# --- canonical JSON ------------------------------------------------------------------

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)  # one, not one per call


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no spaces, ASCII: the same object always gives the same bytes."""
    return _CANONICAL.encode(obj).encode()


# --- tar: headers written by hand, read back checked -----------------------------------

BLOCK = 512
RECORD = 20 * BLOCK  # tar pads the archive to whole records, as GNU tar and tarfile do


def _header_parts() -> tuple[bytes, bytes, bytes, int]:
    """The fixed bytes of a USTAR header around its name, size and checksum fields, and
    their byte sum with the checksum field counted as spaces."""
    middle = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid: fields 100-124
    mtime = b"00000000000\0"  # 136-148
    tail = b"0" + bytes(100) + b"ustar\x0000" + bytes(BLOCK - 265)  # type, linkname, magic+version, rest
    # devmajor/devminor stay NUL for regular files, as tarfile writes them
    return middle, mtime, tail, sum(middle) + sum(mtime) + sum(tail) + 8 * ord(" ")


_MIDDLE, _MTIME, _TAIL, _FIXED_SUM = _header_parts()


def tar_header(name: str, size: int) -> bytes:
    """A USTAR header with the fixed metadata of the format (mtime 0, uid/gid 0, mode 0644).

    Built by hand because ``tarfile.addfile`` costs more than the rest of a
    conversion, from precomputed fixed parts (the checksum is their sum plus the name's
    and the size field's); ``tests/test_writer.py`` checks the bytes equal tarfile's.
    """
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ReidDataError(f"tar member name longer than 100 bytes: {name}")
    size_field = b"%011o\0" % size
    checksum = b"%06o\0 " % (_FIXED_SUM + sum(raw) + sum(size_field))
    return b"".join((raw, bytes(100 - len(raw)), _MIDDLE, size_field, _MTIME, checksum, _TAIL))


def header_ok(header: bytes) -> bool:
    """Whether a tar header's checksum (bytes 148-155, counted as spaces) matches its bytes."""
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def read_members(data: bytes, key: str | None = None) -> dict[str, bytes]:
    """The members of one sample's tar byte range, by extension (``jpg``, ``0000.jpg``, ``json``...).

    Raises ``ValueError`` on a damaged header, a member running past the range, a
    member of another sample than ``key`` (when given), or no members at all.
    """
    out = {}
    pos = 0
    while pos + BLOCK <= len(data):
        header = data[pos : pos + BLOCK]
        if not header.strip(b"\0"):
            break
        if not header_ok(header):
            raise ValueError(f"damaged tar header at byte {pos} of the sample")
        name = header[:100].split(b"\0", 1)[0].decode("ascii", "replace")
        size = int(header[124:136].split(b"\0", 1)[0] or b"0", 8)
        member_key, _, ext = name.partition(".")
        if key is not None and member_key != key:
            raise ValueError(f"holds member {name!r} where the index places sample {key!r}")
        start = pos + BLOCK
        if start + size > len(data):
            raise ValueError(f"member {name!r} runs past the sample's byte range")
        out[ext] = data[start : start + size]
        pos = start + size + (-size % BLOCK)
    if "json" not in out:
        raise ValueError("no KEY.json member in the sample's byte range")
    return out


# --- the index ------------------------------------------------------------------------


def index_schema(kind: str, protocol_names: Sequence[str], attributes: AttributeSchema | None) -> pa.Schema:
    """The columns of ``index.parquet``: placement and identity, each protocol's role, the
    frames of a tracklet (``kind`` video), and the attribute values and SIDs when labelled."""
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
        ("roles", pa.struct([(name, pa.string()) for name in protocol_names])),
    ]
    if kind == "video":
        fields.append(("num_frames", pa.int32()))
        fields.append(("frames", pa.list_(pa.string())))
        fields.append(("frame_sizes", pa.list_(pa.list_(pa.int32()))))
    if attributes is not None:
        fields.append(("attributes", pa.struct([(a.name, pa.string()) for a in attributes.attributes])))
        fields.append(("sid", pa.struct([(g, pa.int32()) for g, _ in attributes.groups])))
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


# --- wids lists ---------------------------------------------------------------------


def wids_bytes(split: str, shards: Sequence[Mapping], *, dataset: str) -> bytes:
    """The wids list of ``shards`` (manifest entries: name, samples, bytes); ``verify`` regenerates it."""
    desc = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"{dataset}/{split}",
        "shardlist": [{"url": s["name"], "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards],
    }
    return canonical_json(desc) + b"\n"


# --- the manifest: counts, digests, version -----------------------------------------


def summary_rows(records: Sequence) -> dict[str, list[dict]]:
    """Per split, what split_summary and protocol_summary read of each index row, from the
    records the rows are made of (``sources.Record``: one row per record)."""
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


def protocol_summary(protocols: Sequence, rows: list[dict]) -> dict:
    """The manifest's protocols (``sources.Protocol``) with their counts in the index rows
    (``verify`` recomputes the counts)."""
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


def finish_manifest(fields: Mapping, shard_hashes: Mapping[str, str], index: pa.Table, *, placement: bytes) -> dict:
    """A complete manifest from a conversion's ``fields``: the format and its version, the
    digest of each field, and the content version of the shards and the index placement."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields}
    manifest["digests"] = manifest_digests(manifest)
    manifest["version"] = content_version(shard_hashes, index, manifest["digests"], placement=placement)
    return manifest


def manifest_bytes(manifest: Mapping) -> bytes:
    """``manifest.json`` as written: sorted keys, two-space indent, ASCII."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


UNHASHED = ("version", "digests", "reiddata_version")  # the version itself; which release wrote it


def manifest_digests(manifest: Mapping) -> dict[str, str]:
    """A short sha256 of each manifest field's canonical JSON (``verify`` names a changed field)."""
    return {
        k: hashlib.sha256(canonical_json(v)).hexdigest()[:16] for k, v in sorted(manifest.items()) if k not in UNHASHED
    }


def placement_text(keys: Sequence[str], shards: Sequence[str], offsets: Sequence[int], sizes: Sequence[int]) -> bytes:
    """``"{key} {shard} {offset} {size}\\n"`` per sample: the index placement as the version hashes it."""
    return "".join(f"{k} {s} {o} {n}\n" for k, s, o, n in zip(keys, shards, offsets, sizes)).encode()


def content_version(
    shard_hashes: Mapping[str, str], index: pa.Table, digests: Mapping[str, str], *, placement: bytes | None = None
) -> str:
    """Hash of every shard's bytes, of where the index places each sample, and of the manifest's meaning.

    The sample metadata in the index is a copy of the ``KEY.json`` members, which the
    shard hashes already cover (``verify`` checks the copy); the placement (key,
    shard, offset, size) is hashed as text, so the version does not depend on how
    pyarrow lays out or writes the table. The manifest's fields (counts, protocols
    and match rules, camera views, attribute schema, dropped counts, options) enter
    through their digests: editing one changes the version, and ``verify`` names it.
    ``placement``: the placement text of ``index`` when the caller has it already.
    """
    h = hashlib.sha256()
    h.update(f"{FORMAT}/{FORMAT_VERSION}\n".encode())
    for name in sorted(shard_hashes):
        h.update(f"{name} {shard_hashes[name]}\n".encode())
    if placement is None:  # ``convert`` passes the text its writers built, shard by shard
        placement = placement_text(*(index.column(c).to_pylist() for c in ("key", "shard", "offset", "size")))
    h.update(placement)
    h.update("".join(f"{k} {v}\n" for k, v in sorted(digests.items())).encode())
    return h.hexdigest()[:16]

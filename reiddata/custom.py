"""Your own data: a table of images (or frames), or a folder of files named by a pattern.

``reiddata convert table TABLE OUT`` reads a CSV, Parquet or JSON-lines table, one row
per image or frame, with the columns

    path      relative to the table's folder (or --root); never absolute, never up and out
    pid       integer identity (>= 0)
    camid     integer camera (>= 0)
    split     train / query / gallery / ... (the splits the spec names)
    view      optional: aerial / ground / wearable (else the spec's camera views, else ground)
    tracklet  optional, with frame: rows of one (split, tracklet) are one tracklet's frames
    frame     optional, with tracklet: integer order of a frame in its tracklet
    <attr>    attribute columns the spec names; any other column is counted and left out

and an optional YAML spec beside it (``TABLE.yaml``, or ``--spec``); every key has a
default, stated here:

    name: campus                 # the dataset's name (default: the table's file stem)
    splits: [train, query, gallery]    # default: those present; train, val, query, gallery first
    train_splits: [train]        # splits whose identities get train labels (default: train)
    protocols:                   # default, when query and gallery splits exist: the one below
      standard: {query: [query], gallery: [gallery], match: camera}
    views: {1: ground, 2: aerial}      # camera -> view (default: the view column, else ground)
    attributes:                  # attribute columns, values in SID order (default: none);
      gender: [male, female]     # null takes the values present, sorted
    groups: {identity: [gender]} # SID groups (default: one group per attribute)

``reiddata convert folder ROOT OUT --pattern REGEX`` builds the same rows from file
names: the pattern's named groups ``pid``, ``camid`` and optionally ``view``,
``tracklet``, ``frame`` are matched against each ``.jpg`` file's name, splits are
sub-folders (``--split query=query --split gallery=bounding_box_test``; default: every
sub-folder, by its name), and ``--drop-pid -1`` drops (and counts) junk identities.

Every rule is checked before anything is written, with the row (or file), column and
value named: a path that escapes the root (``..``, absolute, a link out), a missing
file, a duplicate path, a non-integer id, a split the spec does not name, image and
tracklet rows mixed, an identity whose attributes differ between rows. The result is
an ordinary dataset: versioned, deterministic, read by ``stats``, ``verify``, ``show``
and every reader.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .attributes import AttributeSchema, AttributeTable, coded
from .errors import ReidDataError, bad_input
from .shard_format import MATCH_RULES, PROTOCOL, SPLIT, VIEWS
from .sources.base import Parsed, Protocol, Record, Source, check_image_entry

__all__ = ["TableSpec", "folder_source", "read_rows", "read_spec", "table_source"]

REQUIRED = ("path", "pid", "camid", "split")
OPTIONAL = ("view", "tracklet", "frame")
SPLIT_ORDER = ("train", "val", "query", "gallery")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SPEC_KEYS = {"name", "splits", "train_splits", "protocols", "views", "attributes", "groups"}


@dataclass(frozen=True)
class SplitProtocol:
    protocol: Protocol
    query: tuple[str, ...]
    gallery: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    """What the YAML spec says (or its defaults), checked."""

    name: str
    splits: tuple[str, ...] | None  # None: those present, in SPLIT_ORDER then by name
    train_splits: tuple[str, ...]
    protocols: tuple[SplitProtocol, ...] | None  # None: the default standard protocol, when possible
    views: dict[int, str] | None
    attributes: tuple[tuple[str, tuple[str, ...] | None], ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] | None


def _names(value, where: Path, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise bad_input(where, f"{key} must be a name or a list of names, got {value!r}")
    return tuple(items)


def _protocols(raw, where: Path) -> tuple[SplitProtocol, ...]:
    if not isinstance(raw, dict):
        raise bad_input(where, f"protocols must map names to {{query, gallery, match}}, got {raw!r}")
    out = []
    for name, body in raw.items():
        if not isinstance(name, str) or not PROTOCOL.match(name):
            raise bad_input(where, f"protocol name {name!r} breaks the rule {PROTOCOL.pattern}")
        if not isinstance(body, dict) or not {"query", "gallery"} <= set(body) or set(body) - {
            "query", "gallery", "match", "description"
        }:  # fmt: skip
            raise bad_input(where, f"protocol {name}: needs query and gallery (optional match, description)")
        match = body.get("match", "camera")
        if match not in MATCH_RULES:
            raise bad_input(where, f"protocol {name}: match must be one of {MATCH_RULES}, got {match!r}")
        query = _names(body["query"], where, f"{name}.query")
        gallery = _names(body["gallery"], where, f"{name}.gallery")
        text = body.get("description") or f"{'+'.join(query)} vs {'+'.join(gallery)}; same pid and {match} not counted"
        out.append(SplitProtocol(Protocol(name, str(text), match), query, gallery))
    return tuple(out)


def read_spec(path: Path | None, *, default_name: str) -> TableSpec:
    """The spec at ``path`` (None: every default), checked key by key."""
    import yaml

    raw = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise bad_input(path, f"is not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise bad_input(path, "must be a mapping of spec keys")
        unknown = sorted(set(raw) - SPEC_KEYS)
        if unknown:
            raise bad_input(path, f"unknown keys {unknown}", f"the keys are {sorted(SPEC_KEYS)}")
    where = Path(path) if path is not None else Path("(defaults)")
    name = str(raw.get("name", default_name))
    if not NAME.match(name):
        raise bad_input(where, f"dataset name {name!r} breaks the rule {NAME.pattern}", "set `name:` in the spec")
    splits = _names(raw["splits"], where, "splits") if "splits" in raw else None
    for split in splits or ():
        if not SPLIT.match(split):
            raise bad_input(where, f"split name {split!r} breaks the rule {SPLIT.pattern}")
    views = raw.get("views")
    if views is not None:
        if not isinstance(views, dict) or not all(isinstance(c, int) and v in VIEWS for c, v in views.items()):
            raise bad_input(where, f"views must map integer cameras to one of {VIEWS}, got {views!r}")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise bad_input(where, "attributes must map column names to their values (or null)")
    for column, values in attributes.items():
        if column in REQUIRED + OPTIONAL or values is not None and not _is_names(values):
            raise bad_input(where, f"attribute {column!r}: a column of its own, values a list of names or null")
    groups = raw.get("groups")
    if groups is not None:
        if not isinstance(groups, dict) or not all(_is_names(v) and set(v) <= set(attributes) for v in groups.values()):
            raise bad_input(where, "groups must map group names to lists of the spec's attributes")
        groups = tuple((str(g), tuple(v)) for g, v in groups.items())
    return TableSpec(
        name=name,
        splits=splits,
        train_splits=_names(raw.get("train_splits", ["train"]), where, "train_splits"),
        protocols=_protocols(raw["protocols"], where) if "protocols" in raw else None,
        views={int(c): v for c, v in views.items()} if views else None,
        attributes=tuple((str(c), None if v is None else tuple(map(str, v))) for c, v in attributes.items()),
        groups=groups,
    )


def _is_names(values) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, (str, int)) for v in values)


# ---------------------------------------------------------------- reading rows


def read_rows(table: Path) -> list[dict]:
    """The table's rows as dicts (CSV: every value a string; an empty cell is None)."""
    suffix = table.suffix.lower()
    if not table.is_file():
        raise bad_input(table, "table not found")
    if suffix == ".csv":
        with table.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
            if None in (reader.fieldnames or []) or any(None in row for row in rows):
                raise bad_input(table, "a row has more cells than the header", "fix the CSV")
            return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(table).to_pylist()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(table.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise bad_input(table, f"line {n} is not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise bad_input(table, f"line {n} is not a JSON object")
                rows.append(row)
        return rows
    raise bad_input(table, f"unknown table format {suffix!r}", "use .csv, .parquet or .jsonl")


def _int(value, table: Path, n: int, column: str, *, minimum: int | None = 0) -> int:
    text = str(value).strip() if isinstance(value, str) else value
    if isinstance(text, bool) or not (isinstance(text, int) or isinstance(text, str) and re.fullmatch(r"-?\d+", text)):
        raise bad_input(table, f"row {n}, column {column!r}: {value!r} is not an integer", "write whole numbers")
    number = int(text)
    if minimum is not None and number < minimum:
        raise bad_input(table, f"row {n}, column {column!r}: {number} is below {minimum}")
    return number


def _safe_path(value, table: Path, n: int, root: Path, real_root: str) -> str:
    """The row's path, checked to name a file inside ``root`` (after following links)."""
    if not isinstance(value, str) or not value.strip():
        raise bad_input(table, f"row {n}, column 'path': {value!r} is not a path")
    posix = PurePosixPath(value)
    if posix.is_absolute() or "\\" in value or ".." in posix.parts or re.match(r"^[A-Za-z]:", value):
        raise bad_input(
            table, f"row {n}, column 'path': {value!r} leaves the root", "paths are relative to the root, no .. or /"
        )
    full = root / posix
    real = os.path.realpath(full)
    if os.path.commonpath([real, real_root]) != real_root:
        raise bad_input(table, f"row {n}, column 'path': {value!r} is a link out of the root {root}", "copy it in")
    if not os.path.isfile(real):
        check_image_entry(full)
        raise bad_input(table, f"row {n}, column 'path': {value!r} is not a file under {root}", "fix the path")
    return posix.as_posix()


@dataclass
class _Row:
    n: int
    path: str
    pid: int
    camid: int
    split: str
    view: str | None
    tracklet: str | None
    frame: int | None
    attributes: dict[str, str] | None


def _rows(table: Path, raw: list[dict], root: Path, spec: TableSpec, ignored: Counter) -> list[_Row]:
    if not raw:
        raise bad_input(table, "has no rows")
    columns = set().union(*(r.keys() for r in raw))
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise bad_input(table, f"missing columns {missing}", f"a table needs {list(REQUIRED)}")
    if ("tracklet" in columns) != ("frame" in columns):
        raise bad_input(table, "has one of the columns tracklet and frame without the other")
    wanted = {c for c, _ in spec.attributes}
    absent = sorted(wanted - columns)
    if absent:
        raise bad_input(table, f"the spec names attribute columns {absent} the table lacks")
    for column in sorted(columns - set(REQUIRED) - set(OPTIONAL) - wanted):
        ignored[f"column {column!r} (not a reiddata column or a spec attribute)"] = len(raw)
    real_root, seen, rows = os.path.realpath(root), {}, []
    for n, r in enumerate(raw, 1):
        path = _safe_path(r.get("path"), table, n, root, real_root)
        if path in seen:
            raise bad_input(table, f"row {n}, column 'path': {path!r} repeats row {seen[path]}", "list each file once")
        seen[path] = n
        split = r.get("split")
        if not isinstance(split, str) or not SPLIT.match(split):
            raise bad_input(table, f"row {n}, column 'split': {split!r} breaks the rule {SPLIT.pattern}")
        view = r.get("view")
        if view is not None and view not in VIEWS:
            raise bad_input(table, f"row {n}, column 'view': {view!r} is not one of {VIEWS}")
        tracklet, frame = r.get("tracklet"), r.get("frame")
        attributes = None
        if wanted and any(r.get(c) is not None for c in wanted):
            attributes = {c: str(r.get(c)) for c in sorted(wanted)}
        rows.append(
            _Row(n, path, _int(r.get("pid"), table, n, "pid"), _int(r.get("camid"), table, n, "camid"), split, view,
                 None if tracklet is None else str(tracklet),
                 None if frame is None else _int(frame, table, n, "frame"), attributes)
        )  # fmt: skip
    kinds = Counter(r.tracklet is None for r in rows)
    if len(kinds) == 2:
        first = next(r for r in rows if (r.tracklet is None) != (rows[0].tracklet is None))
        raise bad_input(table, f"row {first.n}: image rows and tracklet rows are mixed (row 1 is the other kind)",
                        "a table is all images or all tracklet frames")  # fmt: skip
    return rows


# ---------------------------------------------------------------- records


def _split_order(rows: list[_Row], spec: TableSpec, table: Path) -> tuple[str, ...]:
    present = {r.split for r in rows}
    if spec.splits is not None:
        for r in rows:
            if r.split not in spec.splits:
                raise bad_input(table, f"row {r.n}, column 'split': {r.split!r} is not a split the spec names",
                                f"the spec's splits are {list(spec.splits)}")  # fmt: skip
        return spec.splits
    return tuple([s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER)))


def _table_protocols(spec: TableSpec, splits: tuple[str, ...], table: Path) -> tuple[SplitProtocol, ...]:
    if spec.protocols is None:
        if "query" in splits and "gallery" in splits:
            text = "query vs gallery; same pid and camera not counted (the default protocol)"
            return (SplitProtocol(Protocol("standard", text), ("query",), ("gallery",)),)
        raise bad_input(table, f"has no query and gallery splits (splits: {list(splits)}) and the spec names no "
                        "protocols", "name the splits query and gallery, or give `protocols:` in a spec")  # fmt: skip
    for p in spec.protocols:
        for split in p.query + p.gallery:
            if split not in splits:
                raise bad_input(table, f"protocol {p.protocol.name} names split {split!r}, which the table lacks")
    return spec.protocols


def _camera_views(rows: list[_Row], spec: TableSpec, table: Path) -> dict[int, str]:
    views: dict[int, tuple[str, int]] = {}
    for r in rows:
        if spec.views is not None:
            if r.camid not in spec.views:
                raise bad_input(table, f"row {r.n}, column 'camid': camera {r.camid} has no view in the spec")
            view = spec.views[r.camid]
            if r.view is not None and r.view != view:
                raise bad_input(table, f"row {r.n}, column 'view': {r.view!r} but the spec says camera {r.camid} "
                                f"is {view!r}")  # fmt: skip
        else:
            view = r.view or "ground"
        if r.camid in views and views[r.camid][0] != view:
            raise bad_input(table, f"row {r.n}, column 'view': camera {r.camid} is {view!r} here and "
                            f"{views[r.camid][0]!r} in row {views[r.camid][1]}", "a camera has one view")  # fmt: skip
        views.setdefault(r.camid, (view, r.n))
    return {c: v for c, (v, _) in sorted(views.items())}


def _attribute_schema(rows: list[_Row], spec: TableSpec, table: Path) -> tuple[AttributeSchema | None, dict]:
    """The schema and ``{pid_raw: values}``, each identity's values checked to agree between its rows."""
    if not spec.attributes:
        return None, {}
    values: dict[str, tuple[str, ...]] = {}
    for column, listed in spec.attributes:
        present = sorted({r.attributes[column] for r in rows if r.attributes})
        values[column] = listed if listed is not None else tuple(present)
        for r in rows:
            if r.attributes and r.attributes[column] not in values[column]:
                raise bad_input(table, f"row {r.n}, column {column!r}: {r.attributes[column]!r} is not one of "
                                f"{list(values[column])}", "add it to the spec's values or fix the row")  # fmt: skip
    per_identity: dict[str, tuple[dict, int]] = {}
    for r in rows:
        if r.attributes is None:
            continue
        known = per_identity.setdefault(str(r.pid), (r.attributes, r.n))
        if known[0] != r.attributes:
            raise bad_input(table, f"row {r.n}: identity {r.pid}'s attributes differ from row {known[1]}",
                            "attributes belong to an identity: give all its rows the same values")  # fmt: skip
    groups = spec.groups or tuple((c, (c,)) for c, _ in spec.attributes)
    schema = AttributeSchema(
        name=f"{spec.name}-table",
        top_key="",
        parts=("table",),
        attributes=tuple(coded(c, values[c]) for c, _ in spec.attributes),
        groups=groups,
    )
    return schema, {pid: v for pid, (v, _) in per_identity.items()}


def _records(rows: list[_Row], splits, protocols, camera_views, spec: TableSpec, with_attributes) -> list[Record]:
    def roles(split: str) -> tuple:
        out = []
        for p in protocols:
            role = "query" if split in p.query else "gallery" if split in p.gallery else None
            if role:
                out.append((p.protocol.name, role))
        return tuple(out)

    def record(r: _Row, frames: tuple[str, ...] = ()) -> Record:
        return Record(
            split=r.split, path=r.path, pid_raw=str(r.pid), pid=r.pid, camid=r.camid, view=camera_views[r.camid],
            roles=roles(r.split), attribute_part="table",
            attribute_id=str(r.pid) if with_attributes and r.attributes else None,
            trainable=r.split in spec.train_splits, frames=frames,
        )  # fmt: skip

    if rows[0].tracklet is None:
        return [record(r) for r in rows]
    tracklets: dict[tuple[str, str], list[_Row]] = defaultdict(list)
    for r in rows:
        tracklets[(r.split, r.tracklet)].append(r)
    out = []
    for frames in tracklets.values():
        frames.sort(key=lambda r: (r.frame, r.n))
        head = frames[0]
        for previous, r in zip(frames, frames[1:]):  # sorted by frame: a repeat sits next to its twin
            if r.frame == previous.frame:
                raise ReidDataError(f"row {r.n}: tracklet {r.tracklet!r} repeats frame {r.frame} of row {previous.n}")
            if (r.pid, r.camid, r.view) != (head.pid, head.camid, head.view):
                raise ReidDataError(
                    f"row {r.n}: tracklet {r.tracklet!r} differs in pid, camid or view from row {head.n}"
                )
        out.append(record(head, tuple(r.path for r in frames)))
    return out


def build_source(
    rows_raw: list[dict], *, table: Path, root: Path, spec: TableSpec, title: str, layout: str,
    dropped: Counter | None = None, ignored: Counter | None = None, sha256: str | None = None,
) -> Source:  # fmt: skip
    """A ``Source`` whose parse returns these rows as records (all checks run here, before any write)."""
    ignored = Counter() if ignored is None else ignored
    rows = _rows(table, rows_raw, root, spec, ignored)
    splits = _split_order(rows, spec, table)
    protocols = _table_protocols(spec, splits, table)
    camera_views = _camera_views(rows, spec, table)
    schema, values = _attribute_schema(rows, spec, table)
    for split in spec.train_splits:
        if split not in splits and spec.train_splits != ("train",):
            raise bad_input(table, f"train_splits names {split!r}, which the table lacks")
    try:
        records = _records(rows, splits, protocols, camera_views, spec, schema is not None)
    except ReidDataError as exc:
        raise bad_input(table, str(exc)) from None
    attribute_table = None
    if schema is not None:
        digest = sha256 or hashlib.sha256(table.read_bytes()).hexdigest()
        attribute_table = AttributeTable(path=table, sha256=digest, rows={"table": values})
    parsed = Parsed(root, "table", records, dropped=dropped or Counter(), ignored=ignored, attributes=attribute_table)
    kind = "video" if records and records[0].frames else "image"
    return Source(
        name=spec.name, title=title, layout=layout, splits=splits, camera_views=camera_views,
        protocols=tuple(p.protocol for p in protocols), parse=lambda _root: parsed, attributes=schema, kind=kind,
    )  # fmt: skip


def table_source(table: Path, *, root: Path | None = None, spec: Path | None = None) -> tuple[Source, Path]:
    """(the source, the image root) of a table; the spec is ``spec`` or ``TABLE.yaml`` beside it."""
    table = Path(table)
    root = Path(root) if root is not None else table.parent
    if not root.is_dir():
        raise bad_input(root, "is not a folder (the root the table's paths are relative to)")
    beside = table.with_suffix(".yaml")
    spec_path = Path(spec) if spec is not None else beside if beside.is_file() else None
    default = re.sub(r"[^a-z0-9_-]", "-", table.stem.lower()).strip("-_") or "table"
    parsed_spec = read_spec(spec_path, default_name=default)
    source = build_source(
        read_rows(table), table=table, root=root, spec=parsed_spec, title=f"{parsed_spec.name} (table {table.name})",
        layout=f"a table: {table.name}",
    )  # fmt: skip
    return source, root


def folder_source(
    root: Path, *, pattern: str, splits: list[str] | None = None, drop_pids: list[str] | None = None,
    spec: Path | None = None, name: str | None = None,
) -> Source:  # fmt: skip
    """A source from file names: ``pattern``'s named groups per ``.jpg``, splits from sub-folders."""
    root = Path(root)
    if not root.is_dir():
        raise bad_input(root, "is not a folder")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ReidDataError(f"--pattern {pattern!r} is not a regular expression ({exc})") from None
    groups = set(regex.groupindex)
    if not {"pid", "camid"} <= groups or groups - {"pid", "camid", "view", "tracklet", "frame"}:
        raise ReidDataError(f"--pattern needs the named groups pid and camid (optional view, tracklet, frame); "
                            f"it has {sorted(groups) or 'none'}")  # fmt: skip
    if ("tracklet" in groups) != ("frame" in groups):
        raise ReidDataError("--pattern has one of the groups tracklet and frame without the other")
    mapping = _split_map(root, splits)
    drop = set(drop_pids or ())
    rows, dropped, ignored = [], Counter(), Counter()
    for split, folder in mapping:
        for path in _walk(root / folder, ignored):
            m = regex.fullmatch(path.name)
            if m is None:
                raise bad_input(path, f"name does not match --pattern {pattern}", "fix the pattern or move the file")
            if m["pid"] in drop:
                dropped[f"pid {m['pid']} in {folder}/"] += 1
                continue
            row = {"path": path.relative_to(root).as_posix(), "pid": m["pid"], "camid": m["camid"], "split": split}
            row |= {k: m[k] for k in ("view", "tracklet", "frame") if k in groups}
            if "tracklet" in groups:  # a tracklet number repeats across identities and cameras: namespaced
                row["tracklet"] = f"{path.parent.relative_to(root).as_posix()}/{m['pid']}/{m['camid']}/{m['tracklet']}"
            rows.append(row)
    parsed_spec = read_spec(spec, default_name=name or _default_name(root))
    if name is not None:
        parsed_spec = TableSpec(**{**parsed_spec.__dict__, "name": name})
    if parsed_spec.splits is None:
        parsed_spec = TableSpec(**{**parsed_spec.__dict__, "splits": tuple(s for s, _ in mapping)})
    return build_source(
        rows, table=root, root=root, spec=parsed_spec, title=f"{parsed_spec.name} (folder, --pattern)",
        layout=f"a folder: {pattern}", dropped=dropped, ignored=ignored,
    )  # fmt: skip


def _default_name(root: Path) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", root.resolve().name.lower()).strip("-_") or "folder"


def _split_map(root: Path, splits: list[str] | None) -> list[tuple[str, str]]:
    if not splits:
        return [(p.name, p.name) for p in sorted(root.iterdir()) if p.is_dir() and SPLIT.match(p.name)]
    out = []
    for item in splits:
        name, sep, folder = item.partition("=")
        if not sep or not SPLIT.match(name) or not folder or ".." in PurePosixPath(folder).parts:
            raise ReidDataError(f"--split {item!r}: write NAME=SUBFOLDER (name matching {SPLIT.pattern})")
        if not (root / folder).is_dir():
            raise bad_input(root / folder, "is not a folder (named by --split)")
        out.append((name, folder))
    return out


def _walk(folder: Path, ignored: Counter) -> list[Path]:
    """Every ``.jpg`` below ``folder``, sorted; links are followed only inside it."""
    out = []
    for path in sorted(folder.rglob("*")):
        check_image_entry(path)
        if path.is_symlink() and not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
            raise bad_input(path, "is a link out of the folder", "copy the file in")
        if path.is_file() and path.suffix == ".jpg":
            out.append(path)
        elif path.is_file():
            ignored[f"not a .jpg in {path.parent.relative_to(folder.parent).as_posix()}/"] += 1
    return out

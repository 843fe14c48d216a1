"""Person-attribute schemas, the MATLAB attribute files, attribute groups and SIDs.

An attribute file (APR for Market/Duke, QUT for AG-ReID) is a MATLAB v5 struct
``<top_key>.{train,test}``: one ``(1, N_ids)`` uint8 array per field plus
``image_index`` (the identity strings). Labels are per identity. Fields are read
**by name**, never by position: the real files order fields differently in their
train and test parts.

An attribute is decoded from one field (``coded``: 1 = first value, 2 = second...)
or from several one-vs-all fields (``onehot``: one yes/no field per value). The real
colour columns are not one-hot (ids with no colour or with several), so an empty row
and a row with several "yes" get explicit values instead of a silent argmax.

A semantic ID (SID, Cerberus) of an attribute group is the mixed-radix index of the
group's attribute values over the full product of their value lists, the first
attribute being the most significant digit: deterministic, and a SID never seen in
the data still has its index.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ReidDataError, bad_input, integer_values

__all__ = [
    "Attribute",
    "AttributeSchema",
    "AttributeTable",
    "coded",
    "onehot",
    "read_attribute_file",
    "write_attribute_file",
]

NO, YES = 1, 2  # the files' codes for one-vs-all fields


@dataclass(frozen=True)
class Attribute:
    """One attribute: its values and the file fields it is decoded from."""

    name: str
    values: tuple[str, ...]  # every value the attribute can take, in SID order
    fields: tuple[str, ...]  # coded: (field,); onehot: one field per coded value
    kind: str  # "coded" or "onehot"
    # coded: value of code 0 (Duke's unlabelled `top`), or None when 0 is an error.
    zero: str | None = None
    # onehot: value of a row with no "yes", and of one with several (None = keep first).
    empty: str | None = None
    multi: str | None = None

    def decode(self, codes: Sequence[int]) -> tuple[str, str | None]:
        """Value for this identity's ``codes`` (one per field) and its anomaly, if any."""
        if self.kind == "coded":
            code = int(codes[0])
            if code == 0 and self.zero is not None:
                return self.zero, f"{self.name}: code 0 -> {self.zero}"
            return self.values[code - 1], None
        yes = [value for value, code in zip(self.values, codes) if int(code) == YES]
        if not yes:
            return str(self.empty), f"{self.name}: no value marked -> {self.empty}"
        if len(yes) > 1:
            chosen = self.multi if self.multi is not None else yes[0]
            return chosen, f"{self.name}: several values marked -> {chosen}"
        return yes[0], None

    def encode(self, value: str) -> dict[str, int]:
        """Field codes that decode to ``value`` (the inverse of :meth:`decode`)."""
        if self.kind == "coded":
            return {self.fields[0]: 0 if value == self.zero else self.values.index(value) + 1}
        coded_values = self.values[: len(self.fields)]
        if value in coded_values:
            marked = {value}
        elif value == self.multi:
            marked = set(coded_values[:2])  # any two marked values decode to `multi`
        else:
            marked = set()
        return {f: YES if v in marked else NO for f, v in zip(self.fields, self.values)}

    def valid_codes(self) -> set[int]:
        if self.kind == "onehot":
            return {NO, YES}
        codes = set(range(1, len(self.values) + 1 - (self.zero is not None)))
        return codes | ({0} if self.zero is not None else set())


def coded(name: str, values: Sequence[str], *, field: str | None = None, zero: str | None = None) -> Attribute:
    """An attribute stored in one field whose code k means ``values[k - 1]``."""
    values = tuple(values) + ((zero,) if zero is not None else ())
    return Attribute(name, values, (field or name,), "coded", zero=zero)


def onehot(
    name: str,
    values: Sequence[str],
    *,
    prefix: str,
    empty: str | None = "none",
    multi: str | None = "multi",
    spelled: Mapping[str, str] | None = None,
) -> Attribute:
    """An attribute stored as one yes/no field per value (``prefix + value``).

    ``spelled`` maps a value to its field name where the file truncates it
    (AG-ReID's ``uppercardiga`` for ``cardigan``).
    """
    extra = tuple(v for v in (empty, multi) if v is not None and v not in values)
    spelled = spelled or {}
    return Attribute(
        name,
        tuple(values) + extra,
        tuple(spelled.get(v, prefix + v) for v in values),
        "onehot",
        empty=empty,
        multi=multi,
    )


@dataclass(frozen=True)
class AttributeSchema:
    """The attributes of one family of attribute files, their groups and file form."""

    name: str  # e.g. "market1501-apr"
    top_key: str  # the MATLAB variable holding the struct
    parts: tuple[str, ...]  # struct fields, in the order the real file stores them
    attributes: tuple[Attribute, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # Cerberus groups, in order
    filenames: tuple[str, ...] = ()  # names the file has next to the data

    def attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(name)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for a in self.attributes for f in a.fields)

    def sid_radices(self, group: str) -> tuple[int, ...]:
        return tuple(len(self.attribute(n).values) for n in dict(self.groups)[group])

    def sids(self, values: Mapping[str, str]) -> dict[str, int]:
        """SID of every group for one identity's attribute ``values``."""
        out = {}
        for group, names in self.groups:
            sid = 0
            for name in names:
                attribute = self.attribute(name)
                sid = sid * len(attribute.values) + attribute.values.index(values[name])
            out[group] = sid
        return out

    def sid_values(self, group: str, sid: int) -> dict[str, str]:
        """The attribute values a group's ``sid`` stands for (inverse of :meth:`sids`)."""
        names = dict(self.groups)[group]
        out = {}
        for name in reversed(names):
            values = self.attribute(name).values
            sid, digit = divmod(sid, len(values))
            out[name] = values[digit]
        return {name: out[name] for name in names}

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "attributes": [{"name": a.name, "values": list(a.values)} for a in self.attributes],
            "groups": [
                {"name": g, "attributes": list(names), "num_sids": int(np.prod(self.sid_radices(g)))}
                for g, names in self.groups
            ],
        }


@dataclass
class AttributeTable:
    """Decoded per-identity attributes of one file: ``rows[part][identity] -> values``."""

    path: Path
    sha256: str
    rows: dict[str, dict[str, dict[str, str]]]
    anomalies: Counter = field(default_factory=Counter)  # "part: message" -> identities

    def lookup(self, part: str, identity: str, *, image: str) -> dict[str, str]:
        try:
            return self.rows[part][identity]
        except KeyError:
            raise bad_input(
                self.path,
                f"identity {identity!r} (of image {image}) has no row in the {part!r} part",
                "use the attribute file that belongs to this dataset, or convert without "
                "attributes by moving the file away",
            ) from None


def _identity_strings(path: Path, part: str, array: np.ndarray) -> list[str]:
    out = []
    for cell in np.asarray(array, dtype=object).ravel():
        item = np.asarray(cell).ravel()
        if item.size != 1:
            raise bad_input(path, f"{part}.image_index holds a non-string entry {cell!r}")
        out.append(str(item[0]).strip())
    return out


def read_attribute_file(path: Path, schema: AttributeSchema) -> AttributeTable:
    """Read and decode an attribute ``.mat`` file by field name; reject what does not fit."""
    import scipy.io  # here, not at the top: `reiddata stats` and the readers never need it

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for non-MATLAB input
        raise bad_input(path, f"not a readable MATLAB v5 file ({exc})", "pass the original .mat") from exc
    if schema.top_key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise bad_input(path, f"no variable {schema.top_key!r} (found {found})", f"pass the {schema.name} file")
    top = mat[schema.top_key]
    names = top.dtype.names or ()
    rows: dict[str, dict[str, dict[str, str]]] = {}
    anomalies: Counter = Counter()
    for part in schema.parts:
        if part not in names:
            raise bad_input(path, f"{schema.top_key} has no {part!r} part (has {list(names)})")
        struct = top[0, 0][part]
        have = set(struct.dtype.names or ())
        missing = [f for f in (*schema.fields, "image_index") if f not in have]
        if missing:
            raise bad_input(
                path, f"{schema.top_key}.{part} lacks the fields {missing}", f"expected {schema.name} fields"
            )
        ids = _identity_strings(path, part, struct[0, 0]["image_index"])
        if len(set(ids)) != len(ids):
            dup = sorted(k for k, n in Counter(ids).items() if n > 1)[:5]
            raise bad_input(path, f"{part}.image_index lists identities twice: {dup}")
        codes = {}
        for name in schema.fields:
            column = np.asarray(struct[0, 0][name]).ravel()
            if column.size != len(ids):
                raise bad_input(path, f"{part}.{name} has {column.size} values for {len(ids)} identities")
            codes[name] = integer_values(path, f"{part}.{name}", column)
        part_rows = {}
        for attribute in schema.attributes:
            allowed = attribute.valid_codes()
            for field_name in attribute.fields:
                bad = sorted(set(codes[field_name].tolist()) - allowed)
                if bad:
                    raise bad_input(path, f"{part}.{field_name} holds codes {bad}; allowed {sorted(allowed)}")
        for i, identity in enumerate(ids):
            values = {}
            for attribute in schema.attributes:
                value, anomaly = attribute.decode([codes[f][i] for f in attribute.fields])
                values[attribute.name] = value
                if anomaly:
                    anomalies[f"{part}: {anomaly}"] += 1
            part_rows[identity] = values
        rows[part] = part_rows
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return AttributeTable(Path(path), digest, rows, anomalies)


def write_attribute_file(
    path: Path,
    schema: AttributeSchema,
    parts: Mapping[str, Mapping[str, Mapping[str, str]]],
    *,
    field_orders: Mapping[str, Sequence[str]] | None = None,
    raw_codes: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
) -> None:
    """Write ``parts[part][identity] -> values`` in the real files' MATLAB struct form.

    ``field_orders`` sets a part's field order (the real files differ per part), so
    that readers indexing by position fail on synthetic data as they do on real data.
    ``raw_codes[part][identity][field]`` overrides encoded codes: the quirks no value
    decodes to (a one-vs-all group with several "yes" kept as the first).
    """
    top = {}
    for part in schema.parts:
        identities = sorted(parts[part])
        columns: dict[str, list[int]] = {f: [] for f in schema.fields}
        for identity in identities:
            edits = (raw_codes or {}).get(part, {}).get(identity, {})
            for attribute in schema.attributes:
                for f, code in attribute.encode(parts[part][identity][attribute.name]).items():
                    columns[f].append(edits.get(f, code))
        order = list((field_orders or {}).get(part, schema.fields))
        if sorted(order) != sorted(schema.fields):
            raise ReidDataError(f"field order for {part!r} must list exactly the schema fields")
        struct = {f: np.asarray(columns[f], dtype=np.uint8).reshape(1, -1) for f in order}
        index = np.empty((1, len(identities)), dtype=object)
        for i, identity in enumerate(identities):
            index[0, i] = identity
        struct["image_index"] = index
        top[part] = struct
    path.parent.mkdir(parents=True, exist_ok=True)
    import scipy.io

    scipy.io.savemat(str(path), {schema.top_key: top}, format="5", do_compression=False)
    fix_mat_header(path)


MAT_HEADER_TEXT = 116  # bytes of free text opening a MATLAB v5 file


def fix_mat_header(path: Path) -> None:
    """Replace the creation time scipy writes into a .mat header with fixed text.

    Without this, the same synthetic world written twice differs in these bytes.
    """
    text = b"MATLAB 5.0 MAT-file, written by reiddata".ljust(MAT_HEADER_TEXT, b" ")
    with open(path, "r+b") as f:
        f.write(text)

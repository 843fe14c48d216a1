"""Facts shared by AG-ReID.v1 and AG-ReID.v2 (Nguyen et al.): names, identity, attributes.

Identity is the string P+T+A (person, MMDD + AM/PM flag, altitude), as the official
``agreidtools`` loaders build it: P alone is only unique within one video and merges
different people (AG-ReID issue #6: 157/162 ids instead of 199/189). The widths are
fixed (4, 5, 1 digits), so ``int(P+T+A)`` is as unique as the string.

The QUT attribute file stores 88 one-vs-all fields (1 = no, 2 = yes) per identity,
decoded here by field name into 15 attributes whose last value is an explicit
``unknown``. A group with no "yes" falls back to ``unknown`` (as LATex does); several
"yes" keep the first and are reported as anomalies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..attributes import AttributeSchema, onehot
from .base import Record, match_name

__all__ = ["PATTERN", "SHOWN", "SCHEMA", "Name", "parse_name"]

# P (4 digits), T = MMDD + AM/PM flag (5 digits), A = altitude 0/1/2, C = camera,
# F = frame (not zero-padded, width varies). The camera is checked apart so a stray
# C2 in v1 gets "unexpected camera" rather than "bad name".
PATTERN = re.compile(r"^P(\d{4})T(\d{5})A([012])C(\d)F(\d+)\.jpg$")
SHOWN = "P0001T04041A0C0F31.jpg"


@dataclass(frozen=True)
class Name:
    """The parts of one AG-ReID file name."""

    identity: str  # "P0000T02140A0": the canonical pid_raw
    camid: int
    frame: int

    @property
    def digits(self) -> str:
        """P+T+A digits, as the attribute file's ``image_index`` spells the identity."""
        return self.identity[1:5] + self.identity[6:11] + self.identity[12]

    @property
    def pid(self) -> int:
        return int(self.digits)  # the official loaders' pid: int("0000" + "02140" + "0") = 21400

    def record(self, *, split: str, path: str, view: str, roles: tuple[tuple[str, str], ...]) -> Record:
        """The sample record of this image; train ids read the file's train part, others its test part."""
        return Record(
            split=split,
            path=path,
            pid_raw=self.identity,
            pid=self.pid,
            camid=self.camid,
            view=view,
            roles=roles,
            attribute_part="train" if split == "train" else "test",
            attribute_id=self.digits,
            trainable=split == "train",
        )


def parse_name(path: Path | str, *, source: str, where: str | None = None) -> Name:
    """Parse an AG-ReID basename (or list entry) or fail naming the file."""
    name = path if isinstance(path, str) else path.name
    m = match_name(PATTERN, name.rsplit("/", 1)[-1], source=source, shown=SHOWN, where=where or str(path))
    p, t, a, camera, frame = m.groups()
    return Name(f"P{p}T{t}A{a}", int(camera), int(frame))


def _one_vs_all(name: str, values: str, **spelled: str):
    """An attribute of one yes/no field per value; its last value is ``unknown``."""
    return onehot(name, values.split(), prefix=name, empty="unknown", multi=None, spelled=spelled)


SCHEMA = AttributeSchema(
    name="agreid-qut",
    top_key="qut_attribute",
    parts=("train", "test"),
    attributes=(
        _one_vs_all("gender", "male female unknown"),
        _one_vs_all("age", "young middle old unknown"),  # 4 values in the file (the README's 9 are wrong)
        _one_vs_all("height", "child short medium tall unknown"),
        _one_vs_all("weight", "thin medium fat unknown"),
        _one_vs_all("ethnic", "white black asian indian unknown", indian="ethnicindia"),
        _one_vs_all("haircolor", "black brown white red gray occluded unknown"),
        _one_vs_all("hairstyle", "bald short medium long horsetail unknown"),
        _one_vs_all("beard", "on off unknown"),
        _one_vs_all("moustache", "on off unknown"),
        _one_vs_all("glasses", "normal sun off unknown"),
        _one_vs_all("head", "hat scarf neckless occluded unknown"),
        _one_vs_all(
            "upper",
            "tshirt blouse sweater coat bikini naked dress uniform shirt suit hoodie cardigan unknown",
            cardigan="uppercardiga",
        ),
        _one_vs_all("lower", "jeans leggins pants shorts skirt bikini dress uniform suit unknown"),
        _one_vs_all("feet", "sportshoe classicshoe highheels boots sandals nothing unknown"),
        _one_vs_all("bag", "normal backpack handbag rolling umbrella sportif market nothing unknown"),
    ),
    groups=(
        ("identity", ("gender", "age", "height", "weight", "ethnic")),
        ("head", ("haircolor", "hairstyle", "beard", "moustache", "glasses", "head")),
        ("upper", ("upper",)),
        ("lower", ("lower", "feet")),
        ("carrying", ("bag",)),
    ),
)
SCHEMA_V1 = replace(SCHEMA, filenames=("qut_attribute_v4_88_attributes.mat",))
SCHEMA_V2 = replace(SCHEMA, filenames=("qut_attribute_v8.mat",))

"""What every source module declares and returns: facts as data, typed records."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..attributes import AttributeSchema, AttributeTable
from ..errors import bad_input
from ..shard_format import MATCH_RULES, VIEWS

__all__ = [
    "Parsed",
    "Protocol",
    "Record",
    "Source",
    "check_image_entry",
    "find_base",
    "list_jpgs",
    "parse_folder_splits",
]


@dataclass(frozen=True)
class Protocol:
    """A query/gallery evaluation protocol; samples carry their role in it.

    ``match`` is the rule an evaluator applies without knowing the dataset: gallery
    items with the query's pid and the same camera (``camera``) or the same view
    (``view``) are not counted as matches. ``query_views`` / ``gallery_views`` are
    the views each side may hold (empty: any); sources check their lists against them.
    """

    name: str
    description: str
    match: str = "camera"
    query_views: tuple[str, ...] = ()
    gallery_views: tuple[str, ...] = ()
    # the queries are gallery items too (MARS as its authors evaluate it); the junk rule then
    # drops each query itself. Written to the manifest only when true.
    query_in_gallery: bool = False

    def __post_init__(self) -> None:
        if self.match not in MATCH_RULES:
            raise ValueError(f"protocol {self.name}: match must be one of {MATCH_RULES}")
        if not set(self.query_views + self.gallery_views) <= set(VIEWS):
            raise ValueError(f"protocol {self.name}: views must be among {VIEWS}")

    def admits(self, role: str, view: str) -> bool:
        """Whether a sample of ``view`` may take ``role`` ("query" | "gallery") here."""
        views = self.query_views if role == "query" else self.gallery_views
        return not views or view in views


class Record(NamedTuple):
    """One image of a source, as parsed from its path (before any file is read).

    A named tuple, not a dataclass: MSMT17 makes 126,441 of them and ``convert`` ships
    them to its writer processes; a tuple is built and pickled several times faster."""

    split: str
    path: str  # posix path relative to the parsed base folder
    pid_raw: str  # the source's identity string, namespaced where numbers repeat
    pid: int  # unique across the whole dataset
    camid: int
    view: str
    roles: tuple[tuple[str, str], ...] = ()  # (protocol, "query" | "gallery")
    attribute_part: str | None = None  # part of the attribute file holding this id
    attribute_id: str | None = None  # the id as the attribute file spells it
    trainable: bool = False  # gets a train label (contiguous over its pids)
    frames: tuple[str, ...] = ()  # a tracklet's frame paths in order (``path`` is the first)


@dataclass
class Parsed:
    """A parsed source tree: records sorted per split, plus what was left out."""

    base: Path
    variant: str
    records: list[Record]
    dropped: Counter = field(default_factory=Counter)  # reason -> images
    ignored: Counter = field(default_factory=Counter)  # non-image files per reason
    protocols: tuple[Protocol, ...] | None = None  # this variant's, when not all the source's
    attributes: AttributeTable | None = None  # values the source carries itself (a table's columns)


@dataclass(frozen=True)
class Source:
    """The facts of one source dataset and its parse function."""

    name: str
    title: str
    layout: str  # what `reiddata sources` prints: the tree the parser expects
    splits: tuple[str, ...]
    camera_views: Mapping[int, str]
    protocols: tuple[Protocol, ...]
    parse: Callable[[Path], Parsed]
    attributes: AttributeSchema | None = None
    kind: str = "image"


def find_base(root: Path, *, source: str, required: Iterable[str], nested: Iterable[str] = ()) -> Path:
    """The folder holding ``required`` entries: ``root`` itself or one of ``nested`` below it.

    Public loaders accept both ``market1501/Market-1501-v15.09.15/...`` and
    ``market1501/...``; so do we.
    """
    required = tuple(required)
    if not root.is_dir():
        raise bad_input(root, f"is not a folder (expected a {source} tree)")
    for candidate in (root, *(root / n for n in nested)):
        if all((candidate / r).exists() for r in required):
            return candidate
    missing = [r for r in required if not (root / r).exists()]
    raise bad_input(
        root,
        f"is not a {source} tree: missing {', '.join(missing)}",
        f"point at the folder holding {', '.join(required)} (run `reiddata sources` for the layout)",
    )


def list_jpgs(folder: Path, ignored: Counter) -> list[Path]:
    """Sorted ``*.jpg`` files of ``folder``; anything else is counted, not read.

    Real downloads carry ``Thumbs.db`` and readme files beside the images.
    """
    out = []
    for path in sorted(folder.iterdir()):
        check_image_entry(path)
        if path.is_file() and path.suffix == ".jpg":
            out.append(path)
        else:
            ignored[f"not a .jpg in {folder.name}/"] += 1
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def check_image_entry(path: Path) -> None:
    """Refuse what would otherwise vanish silently: a dangling link, an image not named ``.jpg``.

    Every source names its images ``*.jpg``; a ``.JPG`` or ``.jpeg`` beside them is an
    image that a suffix test would drop without a word (counting it as "ignored"
    would hide a real sample), so it is an error naming the file.
    """
    if path.is_symlink() and not path.exists():
        raise bad_input(path, "is a symbolic link to nothing (dangling)", "restore its target or remove the link")
    if path.suffix != ".jpg" and path.suffix.lower() in IMAGE_SUFFIXES:
        raise bad_input(
            path,
            f"an image named {path.suffix!r}: every image of this source is a lower-case .jpg",
            "rename it to .jpg if it belongs to the dataset, or move it out",
        )


def match_name(
    pattern: re.Pattern[str], path: Path | str, *, source: str, shown: str, where: str | None = None
) -> re.Match[str]:
    """Match ``pattern`` on a basename (or a list-file entry) or fail naming the file."""
    name = path if isinstance(path, str) else path.name
    m = pattern.match(name)
    if m is None:
        raise bad_input(
            where or path,
            f"name does not follow the {source} pattern {shown} (regex {pattern.pattern})",
            "remove or rename the file; reiddata does not guess",
        )
    return m


def check_camera(camid: int, camera_views: Mapping[int, str], path: Path | str, *, source: str) -> str:
    """The view of ``camid``, or an error naming the file and the allowed cameras."""
    if camid not in camera_views:
        raise bad_input(
            path,
            f"unexpected camera {camid}: {source} has cameras {sorted(camera_views)}",
            "remove the file (old downloads carry stray images) or check the source name",
        )
    return camera_views[camid]


def parse_folder_splits(
    base: Path,
    *,
    source: str,
    variant: str,
    folders: tuple[tuple[str, str], ...],
    pattern: re.Pattern[str],
    shown: str,
    camera_views: Mapping[int, str],
    protocol: str,
    junk: str | None = None,
    distractor: str | None = None,
) -> Parsed:
    """Parse a layout of one flat folder per split (Market-1501, DukeMTMC-reID).

    The pattern's groups 1 and 2 are pid and camera. ``junk`` images are dropped and
    counted; ``distractor`` images stay in the gallery with no attributes, matching
    no query.
    """
    parsed = Parsed(base, variant, [])
    for split, folder in folders:
        for path in list_jpgs(base / folder, parsed.ignored):
            m = match_name(pattern, path, source=source, shown=shown)
            pid_raw, camid = m.group(1), int(m.group(2))
            view = check_camera(camid, camera_views, path, source=source)
            if pid_raw == junk:
                parsed.dropped[f"junk pid {junk} in {folder}/"] += 1
                continue
            if pid_raw == distractor and split != "gallery":
                raise bad_input(path, f"pid {distractor} marks a distractor, which belongs only to the gallery")
            role = split if split in ("query", "gallery") else None
            parsed.records.append(
                Record(
                    split=split,
                    path=f"{folder}/{path.name}",
                    pid_raw=pid_raw,
                    pid=int(pid_raw),
                    camid=camid,
                    view=view,
                    roles=((protocol, role),) if role else (),
                    attribute_part="train" if split == "train" else "test",
                    attribute_id=None if pid_raw == distractor else pid_raw,
                    trainable=split == "train",
                )
            )
    return parsed

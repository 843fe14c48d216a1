"""Reading a converted dataset's manifest and index, with the format checked."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import bad_input
from .writer import FORMAT, FORMAT_VERSION, INDEX, MANIFEST

__all__ = ["load_manifest", "load_index"]


def load_manifest(path: Path) -> dict:
    """The manifest of the dataset at ``path``; errors name what is wrong."""
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise bad_input(path, f"is not a converted reiddata dataset (no {MANIFEST})", "run `reiddata convert` first")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise bad_input(file, f"is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise bad_input(file, f"format is {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise bad_input(
            file,
            f"format_version {manifest.get('format_version')!r} is not supported "
            f"(this reiddata reads {FORMAT_VERSION})",
            "convert the source again with this reiddata, or install the reiddata that wrote it",
        )
    return manifest


def load_index(path: Path) -> pa.Table:
    file = Path(path) / INDEX
    if not file.is_file():
        raise bad_input(file, "index missing: the dataset is incomplete", "convert again")
    return pq.read_table(file)

"""The front door: ``open_dataset`` of one location (a folder or a URL) or of several (one
training set, ``reiddata.combine``). It stands above the reader and the combination, so
neither imports the other backwards."""

from __future__ import annotations

from pathlib import Path

from .combine import open_combined
from .reader import ReidDataset

__all__ = ["open_dataset"]


def open_dataset(location, *, cache_dir: str | Path | None = None, cache_limit: int | str | None = None):
    """Open the converted dataset at ``location``: a folder, ``http(s)://...``, ``s3://bucket/prefix``
    or any fsspec URL. Remote shards are cached, verified, in ``cache_dir`` (else ``$REIDDATA_CACHE``,
    else the user cache folder), within ``cache_limit`` bytes (else ``$REIDDATA_CACHE_LIMIT``,
    else no limit; ``"40GB"`` and ``"40GiB"`` are read too). Errors say what is wrong and what to do.

    A list or tuple of locations opens them as one training set (``reiddata.combine``:
    identities and cameras namespaced per dataset); a one-item list is that dataset."""
    if isinstance(location, (list, tuple)):
        if len(location) == 1:
            return ReidDataset(location[0], cache_dir=cache_dir, cache_limit=cache_limit)
        return open_combined(location, cache_dir=cache_dir, cache_limit=cache_limit)
    return ReidDataset(location, cache_dir=cache_dir, cache_limit=cache_limit)

"""reiddata: person re-identification datasets as versioned WebDataset shards."""

from ._version import __version__
from .errors import ReidDataError

__all__ = [
    "SOURCES",
    "IdentityBalancedSampler",
    "RandomIdentitySampler",
    "ChunkIdentitySampler",
    "ReidDataError",
    "ReidDataset",
    "ShardDataset",
    "StreamingDataset",
    "__version__",
    "convert",
    "get_source",
    "open_dataset",
    "pk_batches",
    "read_clip",
    "sample_clips",
    "synth",
    "to_hf_dataset",
]


# Imported on first use: `reiddata stats` should not pay for scipy (the converter),
# Pillow (the synthetic world), torch or datasets (some readers). No submodule shares a
# name with what it exports here, so a lazy name is never shadowed by its module.
_LAZY = {
    "convert": ".conversion",
    "synth": ".synthetic",
    "SOURCES": ".sources",
    "IdentityBalancedSampler": ".samplers",
    "RandomIdentitySampler": ".samplers",
    "ChunkIdentitySampler": ".samplers",
    "ReidDataset": ".reader",
    "ShardDataset": ".reader",
    "StreamingDataset": ".stream",
    "get_source": ".sources",
    "open_dataset": ".locations",
    "pk_batches": ".samplers",
    "read_clip": ".video",
    "sample_clips": ".temporal",
    "to_hf_dataset": ".hf",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'reiddata' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)

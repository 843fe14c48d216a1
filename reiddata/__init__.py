"""reiddata: person re-identification datasets as versioned WebDataset shards."""

from ._version import __version__
from .convert import convert
from .errors import ReidDataError
from .reader import ReidDataset, ShardDataset, open_dataset
from .samplers import IdentityBalancedSampler, pk_batches
from .sources import SOURCES, get_source
from .synth import synth
from .temporal import sample_clips
from .video import read_clip

__all__ = [
    "SOURCES",
    "IdentityBalancedSampler",
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


def __getattr__(name: str):
    # torch and datasets load slowly: import them only for the readers that need them
    if name == "StreamingDataset":
        from .stream import StreamingDataset

        return StreamingDataset
    if name == "to_hf_dataset":
        from .hf import to_hf_dataset

        return to_hf_dataset
    raise AttributeError(f"module 'reiddata' has no attribute {name!r}")

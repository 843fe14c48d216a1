"""reiddata: person re-identification datasets as versioned WebDataset shards."""

from ._version import __version__
from .convert import convert
from .errors import ReidDataError
from .sources import SOURCES, get_source
from .synth import synth
from .temporal import sample_clips
from .video import read_clip

__all__ = ["SOURCES", "ReidDataError", "__version__", "convert", "get_source", "read_clip", "sample_clips", "synth"]

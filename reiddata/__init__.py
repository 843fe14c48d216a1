"""reiddata: person re-identification datasets as versioned WebDataset shards."""

from ._version import __version__
from .convert import convert
from .errors import ReidDataError
from .sources import SOURCES, get_source
from .synth import synth

__all__ = ["SOURCES", "ReidDataError", "__version__", "convert", "get_source", "synth"]

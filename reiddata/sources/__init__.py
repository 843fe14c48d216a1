"""Registry of source datasets: CLI name -> the module's ``SOURCE`` facts.

One module per source; modules whose name starts with ``_`` are helpers shared by
some of them (AG-ReID's identity and attributes, the MARS table format), not sources.
"""

from __future__ import annotations

from ..errors import ReidDataError
from . import agreid_v1, agreid_v2, cargo, dukemtmc, g2a_vreid, market1501, mars, msmt17
from .base import Parsed, Protocol, Record, Source

__all__ = ["SOURCES", "Parsed", "Protocol", "Record", "Source", "get_source"]

SOURCES: dict[str, Source] = {
    m.SOURCE.name: m.SOURCE for m in (market1501, dukemtmc, msmt17, agreid_v1, agreid_v2, cargo, g2a_vreid, mars)
}


def get_source(name: str) -> Source:
    """The source called ``name``; the error lists the valid names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ReidDataError(f"unknown source {name!r}: expected one of {', '.join(sorted(SOURCES))}") from None

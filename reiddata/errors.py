"""The one exception type of reiddata: bad input, said so a user can act on it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ReidDataError", "bad_input"]


class ReidDataError(Exception):
    """Input that breaks a rule of its source or of the shard format.

    The message names the file, the rule it broke and what to do. The CLI prints it
    and exits non-zero; library callers can catch it.
    """


def bad_input(path: str | Path, rule: str, fix: str = "") -> ReidDataError:
    """Build the error for ``path`` breaking ``rule``, with an optional ``fix``."""
    message = f"{path}: {rule}"
    if fix:
        message += f"\n  fix: {fix}"
    return ReidDataError(message)

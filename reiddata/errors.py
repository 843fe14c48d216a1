"""The one exception type of reiddata: bad input, said so a user can act on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ReidDataError", "bad_input", "integer_values"]


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


def integer_values(path: str | Path, what: str, values: object) -> np.ndarray:
    """``values`` (e.g. a ``.mat`` array) as int64, or an error: not numeric, not finite, or not whole.

    ``astype(int)`` would turn 1.5 into 1 and fail on text with a traceback; a label
    file that holds either is damaged, and reading it silently would mislabel data.
    """
    array = np.asarray(values)
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise bad_input(path, f"{what} holds non-numeric values ({array.dtype})", "use the original file")
    if np.issubdtype(array.dtype, np.floating):
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            bad = array[~whole].ravel()[:3].tolist()
            raise bad_input(path, f"{what} holds values that are not whole numbers: {bad}", "use the original file")
    return array.astype(np.int64)

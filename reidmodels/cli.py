"""The ``reidmodels`` command (train and evaluate arrive with the model issues)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reidmodels", description="CLIP-based ReID models on reiddata shards")
    parser.add_argument("--version", action="version", version=f"reidmodels {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

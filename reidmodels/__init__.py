"""reidmodels: CLIP-based person re-identification models trained on reiddata shards.

This package is the training side of the project; it imports ``reiddata``, never the
reverse. The models, losses, evaluation and engine arrive with their issues; today it
reports the datasets it can read.
"""

from reiddata import __version__

__all__ = ["__version__"]

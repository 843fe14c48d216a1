"""reidmodels: CLIP-based person re-identification models trained on reiddata shards.

This package is the training side of the project; it imports ``reiddata``, never the
reverse. ``build_model(kind, dataset=...)`` sizes a model for a converted dataset;
``reidmodels train`` / ``evaluate`` (``reidmodels.engine``) run it.
"""

from reiddata import __version__

from .models import build_model

__all__ = ["__version__", "build_model"]

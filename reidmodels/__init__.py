"""reidmodels: CLIP-based person re-identification methods trained on reiddata shards.

This package is the training side of the project; it imports ``reiddata``, never the
reverse. ``build_model(name, dataset=...)`` sizes a method (``reidmodels.methods``) for
a converted dataset; ``reidmodels train`` / ``evaluate`` (``reidmodels.engine``) run it.
"""

from reiddata import __version__

from .methods import METHODS, build_model

__all__ = ["METHODS", "__version__", "build_model"]

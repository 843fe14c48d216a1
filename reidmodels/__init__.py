"""reidmodels: CLIP-based person re-identification methods trained on reiddata shards.

This package is the training side of the project; it imports ``reiddata``, never the
reverse. ``build_model(name, dataset=...)`` sizes a method (``reidmodels.methods``) for
a converted dataset; ``reidmodels train`` / ``evaluate`` (``reidmodels.engine``) run it;
``load(run)`` gives a trained model to embed crops and tracklets with (``reidmodels.use``).
"""

from reiddata import __version__

from .factory import build_model, build_model_from_checkpoint
from .methods import METHODS

__all__ = ["METHODS", "__version__", "build_model", "build_model_from_checkpoint", "load"]


def load(run_or_checkpoint, *, device: str = "auto"):
    """A trained run (folder or ``checkpoint.pt``) ready to ``embed``: see ``reidmodels.use``."""
    from .use import load as _load

    return _load(run_or_checkpoint, device=device)

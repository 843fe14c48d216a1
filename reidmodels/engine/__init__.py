"""Training and evaluation of any registered method on reiddata shards, in small rooms as
fast-reid's engine: ``config`` (what a run is told), ``data`` (the loader, the sampler and
what an epoch iterates), ``trainer`` (a run of stages, a stage of epochs, an epoch of
steps) and ``hooks`` (trace, periodic evaluation, logs). Checkpoints are
``reidmodels.checkpoint``, models are built by ``reidmodels.factory``, evaluation is
``reidmodels.evaluation`` and DDP helpers are ``reidmodels.runtime``. Nothing here
knows a method by name.
"""

from ..evaluation.run import EvalConfig, evaluate
from .config import TrainConfig, load_config
from .trainer import train

__all__ = ["EvalConfig", "TrainConfig", "evaluate", "load_config", "train"]

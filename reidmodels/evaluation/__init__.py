"""The evaluation room: features, ranking, re-ranking and reports.

- ``metrics``: ``rank_metrics`` on a whole distance matrix (the reference), distances,
  the random baseline's expectation, attribute metrics.
- ``ranking``: ``rank_features``, the same metrics a block of queries at a time in
  bounded memory, on CUDA when present; ``evaluate_protocol`` on a converted dataset.
- ``rerank``: k-reciprocal re-ranking from sparse neighbour lists.
- ``features``: a trained model's test features, split over ranks, cached as Parquet.
- ``run``: ``evaluate(config)``, what ``reidmodels evaluate`` runs, and its reports.

``run`` and ``features`` load methods, which import this package's metrics: they are
imported on first use (``reidmodels.evaluation.evaluate``), never at package import.
"""

from .metrics import expected_random_ap, label_based_mean_accuracy, pairwise_distance, rank_metrics, retrieval_metrics
from .ranking import evaluate_protocol, rank_features

__all__ = [
    "EvalConfig",
    "evaluate",
    "evaluate_protocol",
    "expected_random_ap",
    "label_based_mean_accuracy",
    "pairwise_distance",
    "rank_features",
    "rank_metrics",
    "retrieval_metrics",
]


def __getattr__(name: str):
    if name in ("EvalConfig", "evaluate"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

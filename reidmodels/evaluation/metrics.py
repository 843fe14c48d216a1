"""Ranking metrics (CMC, mAP, mINP) on a whole distance matrix, the random baseline, and
attribute metrics: the reference that the blocked ranking (``ranking.py``) must equal.

The standard rule (Market-1501, torchreid ``eval_market1501``): for each query,
gallery items with the query's pid **and** the query's camera are dropped; a query
with no valid match left is skipped. A protocol that matches by view (CARGO's A<->G)
uses the view in place of the camera. CMC and mAP equal torchreid's
``evaluate_rank``; mINP is fast-reid's (Ye et al.): for each query, the number of
true matches divided by the rank of the hardest (last) one, averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "expected_random_ap",
    "label_based_mean_accuracy",
    "pairwise_distance",
    "rank_metrics",
    "retrieval_metrics",
]


def rank_metrics(
    distmat: np.ndarray,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_camids: Sequence[int],
    g_camids: Sequence[int],
    max_rank: int = 50,
) -> dict:
    """``{"cmc": array (max_rank,), "mAP": float, "mINP": float, "queries": valid queries}``.

    Holds the whole ``distmat`` and its argsort in memory: fine at Market-1501's size, the
    reference for tests; ``rank_features`` computes the same in bounded memory. Tied
    distances rank in gallery order (a stable sort), the rule ``rank_features`` follows.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if (num_q, num_g) != (len(q_pids), len(g_pids)):
        raise ValueError(f"distmat is {distmat.shape} for {len(q_pids)} queries and {len(g_pids)} gallery items")
    max_rank = min(max_rank, num_g)
    order = np.argsort(distmat, axis=1, kind="stable")  # ties: the earlier gallery item first
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        ranked = order[i]
        keep = ~((g_pids[ranked] == q_pids[i]) & (g_camids[ranked] == q_camids[i]))
        hits = (g_pids[ranked][keep] == q_pids[i]).astype(np.float64)
        if not hits.any():
            continue  # the query's identity is not in the (kept) gallery
        found = hits.cumsum()
        cmcs.append(np.minimum(found, 1)[:max_rank])
        positions = np.flatnonzero(hits) + 1.0
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
        inps.append(float(len(positions) / positions[-1]))
    if not cmcs:
        raise ValueError("no query has a valid match in the gallery")
    cmc = np.zeros(max_rank)
    for row in cmcs:  # a query with fewer kept items than max_rank holds its last value
        cmc[: len(row)] += row
        cmc[len(row) :] += row[-1]
    return {
        "cmc": (cmc / len(cmcs)).astype(np.float32),
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "queries": len(cmcs),
    }


def pairwise_distance(query: np.ndarray, gallery: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distances between feature rows: ``cosine`` (1 - cosine similarity) or ``euclidean``."""
    q, g = np.asarray(query, dtype=np.float32), np.asarray(gallery, dtype=np.float32)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - q @ g.T
    if metric == "euclidean":
        squared = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T
        return np.sqrt(np.maximum(squared, 0))
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def label_based_mean_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """mA of one attribute: the mean, over its values present in ``truth``, of the balanced
    accuracy (true-positive rate + true-negative rate) / 2 of that value against the rest."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = []
    for value in np.unique(truth):
        positive = truth == value
        tpr = float(np.mean(predicted[positive] == value))
        tnr = float(np.mean(predicted[~positive] != value)) if (~positive).any() else 1.0
        scores.append((tpr + tnr) / 2)
    return float(np.mean(scores))


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict:
    """mAP and Rank-1 of ranking each row's gallery by ``scores`` (higher first); rows
    with no relevant item are skipped."""
    aps, top1 = [], []
    for s, r in zip(np.asarray(scores), np.asarray(relevant, dtype=bool)):
        if not r.any():
            continue
        hits = r[np.argsort(-s, kind="stable")]
        positions = np.flatnonzero(hits) + 1.0
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
        top1.append(float(hits[0]))
    return {"mAP": float(np.mean(aps)), "rank1": float(np.mean(top1)), "queries": len(aps)}


def expected_random_ap(kept: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """The exact expected AP of a uniformly random ranking, per query: ``kept`` gallery items
    of which ``matches`` are true (both >= 1).

    With n items and m matches, a relevant item at rank k contributes P@k / m, and over
    random orders E[rel_k] = m / n, E[rel_k rel_l] = m (m - 1) / (n (n - 1)) for l < k, so
    E[AP] = ((n - m) H_n + n (m - 1)) / (n (n - 1)), H_n the n-th harmonic number (1 when
    n = 1). This is the chance baseline at no cost beyond the counts, where one random
    draw would cost a whole second evaluation and still be a sample, not the expectation.
    """
    from scipy.special import digamma

    n, m = np.asarray(kept, dtype=np.float64), np.asarray(matches, dtype=np.float64)
    harmonic = digamma(n + 1) + np.euler_gamma
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = ((n - m) * harmonic + n * (m - 1)) / (n * (n - 1))
    return np.where(n > 1, ap, 1.0)

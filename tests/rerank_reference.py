"""A dense k-reciprocal re-ranking, written from the formula of Zhong et al. (CVPR 2017)
as the published code computes it (whole matrices, loops per item), in float64: the
reference that the sparse, blocked ``reidmodels.evaluation.rerank`` must equal."""

from __future__ import annotations

import numpy as np


def _reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = rank[i, : k + 1]
    return forward[np.any(rank[forward, : k + 1] == i, axis=1)]


def dense_rerank(query: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """Re-ranked query x gallery distances; features L2-normalised by the caller for cosine."""
    x = np.concatenate([query, gallery]).astype(np.float64)
    n, n_q = len(x), len(query)
    squared = np.maximum((x**2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2 * x @ x.T, 0)
    dist = squared / squared.max(1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")
    v = np.zeros((n, n))
    for i in range(n):
        members = _reciprocal(rank, i, k1)
        expanded = members
        for c in members:
            candidate = _reciprocal(rank, c, int(np.around(k1 / 2)))
            if len(np.intersect1d(candidate, members)) > 2 / 3 * len(candidate):
                expanded = np.append(expanded, candidate)
        expanded = np.unique(expanded)
        weight = np.exp(-dist[i, expanded])
        v[i, expanded] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    shared = np.array([[np.minimum(v[i], v[j]).sum() for j in range(n_q, n)] for i in range(n_q)])
    jaccard = 1 - shared / (2 - shared)
    return jaccard * (1 - lam) + dist[:n_q, n_q:] * lam

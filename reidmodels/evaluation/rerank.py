"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) from sparse neighbour lists.

The published code (CLIP-ReID's and torchreid's ``re_ranking``) builds dense (Q+G) x (Q+G)
matrices: 35 GB of distances alone at MSMT17's size. Every quantity it uses is sparse
but the distances, so here:

1. one blocked pass over all Q+G items keeps each item's k1 + 1 nearest neighbours and
   its largest distance (the dense code divides each row by it);
2. the k-reciprocal sets, their expansion (a candidate's k1/2-reciprocal set joins when
   more than 2/3 of it is already in), the Gaussian weights ``V`` and the k2 query
   expansion are sparse matrices (scipy.sparse), about k1 to k1 x k2 entries a row;
3. per block of queries, the Jaccard distance to every gallery item comes from the
   pairs that share a neighbour (everything else is 1), and the final distance
   ``(1 - lambda) jaccard + lambda original`` goes to the same exact ranking as plain
   distances.

The original distance is the squared Euclidean one over the features (L2-normalised
first for ``cosine``, as CLIP-ReID's evaluator with ``FEAT_NORM``), each row divided by
its maximum over all Q+G items. Deviation: ``V`` and the Jaccard distances are float32
here, float16 in the published code (a precision difference only).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from .memory import rows_per_block

__all__ = ["PRESETS", "rerank_blocks", "rerank_settings"]

PRESETS = {
    "zhong": {"k1": 20, "k2": 6, "lambda_value": 0.3},  # the paper's, torchreid's defaults
    # TransReID's R1_mAP_eval, which CLIP-ReID keeps (utils/metrics.py) when TEST.RE_RANKING is on
    "transreid": {"k1": 50, "k2": 15, "lambda_value": 0.3},
}


def rerank_settings(rerank: bool | str | dict) -> dict:
    """``True`` -> the paper's (20, 6, 0.3); a preset name; or a dict of k1, k2, lambda_value."""
    if rerank is True:
        return dict(PRESETS["zhong"])
    if isinstance(rerank, str):
        if rerank not in PRESETS:
            raise ValueError(f"rerank preset {rerank!r} unknown: use one of {sorted(PRESETS)} or a dict")
        return dict(PRESETS[rerank])
    if isinstance(rerank, dict):
        unknown = sorted(set(rerank) - {"k1", "k2", "lambda_value"})
        if unknown:
            raise ValueError(f"rerank: unknown keys {unknown}; allowed: k1, k2, lambda_value")
        settings = PRESETS["zhong"] | rerank
        k1, k2, lam = settings["k1"], settings["k2"], settings["lambda_value"]
        if not (isinstance(k1, int) and k1 >= 1 and isinstance(k2, int) and k2 >= 1 and 0 <= float(lam) <= 1):
            raise ValueError(f"rerank: need integers k1, k2 >= 1 and 0 <= lambda_value <= 1, got {settings}")
        return {"k1": k1, "k2": k2, "lambda_value": float(lam)}
    raise ValueError(f"rerank must be True, a preset name or a dict, got {rerank!r}")


def _squared(a: torch.Tensor, b: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (norms given)."""
    return (a @ b.T).mul_(-2).add_(a2[:, None]).add_(b2[None, :]).clamp_(min=0)


def _neighbours(x: torch.Tensor, x2: torch.Tensor, k: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest items (itself usually first) and its largest distance."""
    k = min(k, len(x))
    nearest, largest = [], []
    for start in range(0, len(x), rows):
        d = _squared(x[start : start + rows], x, x2[start : start + rows], x2)
        largest.append(d.amax(1).cpu())
        nearest.append(torch.topk(d, k, dim=1, largest=False, sorted=True).indices.cpu())
        del d
    return torch.cat(nearest).numpy(), torch.cat(largest).double().numpy()


def _graph(nearest: np.ndarray, k: int) -> sp.csr_matrix:
    """0/1 matrix: row i marks the first ``k`` of i's neighbour list."""
    n = len(nearest)
    cols = nearest[:, :k]
    rows = np.repeat(np.arange(n), cols.shape[1])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols.ravel())), shape=(n, n))


def _reciprocal(nearest: np.ndarray, k: int) -> sp.csr_matrix:
    """R[i, j] = 1 when j is among i's k nearest and i among j's."""
    a = _graph(nearest, k)
    return a.multiply(a.T).tocsr()


def _expanded_sets(nearest: np.ndarray, k1: int) -> sp.csr_matrix:
    """Each item's k-reciprocal set, grown by every candidate's k1/2-reciprocal set that
    shares more than 2/3 of its members with it."""
    full = _reciprocal(nearest, k1 + 1)
    half = _reciprocal(nearest, int(np.around(k1 / 2)) + 1)  # numpy's rounding, as the published code
    shared = full.multiply(full @ half.T).tocoo()  # at (i, c) in R: |R_half(c) & R(i)|
    size = np.asarray(half.sum(1)).ravel()
    rows, cols = shared.row, shared.col
    keep = shared.data > 2 / 3 * size[cols]
    joins = sp.csr_matrix((np.ones(keep.sum(), dtype=np.float32), (rows[keep], cols[keep])), shape=full.shape)
    return ((full + joins @ half) > 0).astype(np.float32).tocsr()


def _pair_distances(x: torch.Tensor, x2: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared distances of the listed pairs, a chunk at a time (no dense matrix)."""
    out = np.empty(len(rows), dtype=np.float64)
    chunk = max(1, (64 << 20) // (4 * x.shape[1]))
    for s in range(0, len(rows), chunk):
        r = torch.as_tensor(rows[s : s + chunk], device=x.device)
        c = torch.as_tensor(cols[s : s + chunk], device=x.device)
        dot = (x[r] * x[c]).sum(1)
        out[s : s + chunk] = (x2[r] + x2[c] - 2 * dot).clamp_(min=0).double().cpu().numpy()
    return out


def _weights(sets: sp.csr_matrix, x: torch.Tensor, x2: torch.Tensor, largest: np.ndarray) -> sp.csr_matrix:
    """V: over each item's expanded set, exp(-normalised distance), rows summing to one."""
    coo = sets.tocoo()
    rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
    scale = np.where(largest > 0, largest, 1.0)
    weight = np.exp(-_pair_distances(x, x2, rows, cols) / scale[rows])
    v = sp.csr_matrix((weight, (rows, cols)), shape=sets.shape)
    total = np.asarray(v.sum(1)).ravel()
    return sp.diags(1.0 / np.where(total > 0, total, 1.0)) @ v


def _query_expansion(v: sp.csr_matrix, nearest: np.ndarray, k2: int) -> sp.csr_matrix:
    """Each row of V replaced by the mean of the rows of its k2 nearest items."""
    if k2 == 1:
        return v
    mean = _graph(nearest, k2).multiply(1.0 / min(k2, nearest.shape[1]))
    return (mean @ v).tocsr()


def _shared_mass(vq: sp.csr_matrix, vg_by_column: sp.csc_matrix) -> sp.csr_matrix:
    """S[i, j] = sum over k of min(Vq[i, k], Vg[j, k]), only where the two rows share a k."""
    q = vq.tocoo()
    starts, ends = vg_by_column.indptr[q.col], vg_by_column.indptr[q.col + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(q.row)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    at = starts[owner] + offsets
    mass = np.minimum(q.data[owner], vg_by_column.data[at])
    shape = (vq.shape[0], vg_by_column.shape[0])
    return sp.csr_matrix((mass, (q.row[owner], vg_by_column.indices[at])), shape=shape)


def rerank_blocks(
    q: torch.Tensor, g: torch.Tensor, *, metric: str, memory: int, k1: int, k2: int, lambda_value: float
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, re-ranked distances)`` for blocks of queries against the whole gallery.

    ``q`` and ``g`` as ``prepare_features`` leaves them (queries normalised for ``cosine``).
    """
    x = torch.cat([q, g])
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1, out=x)
    x2 = (x * x).sum(1)
    n_q, n = len(q), len(x)
    nearest, largest = _neighbours(x, x2, max(k1 + 1, k2), rows_per_block(n, memory, cell_bytes=8))
    v = _query_expansion(_weights(_expanded_sets(nearest, k1), x, x2, largest), nearest, k2)
    v = v.astype(np.float32).tocsr()
    vg_by_column = v[n_q:].tocsc()
    scale = torch.as_tensor(np.where(largest > 0, largest, 1.0)[:n_q], dtype=torch.float32, device=q.device)
    rows = rows_per_block(len(g), memory, cell_bytes=24)
    for start in range(0, n_q, rows):
        stop = min(start + rows, n_q)
        original = _squared(x[start:stop], x[n_q:], x2[start:stop], x2[n_q:]).div_(scale[start:stop, None])
        shared = _shared_mass(v[start:stop], vg_by_column).tocoo()
        jaccard = torch.ones_like(original)
        s = torch.as_tensor(shared.data, dtype=torch.float32, device=q.device)
        r = torch.as_tensor(shared.row.astype(np.int64), device=q.device)
        c = torch.as_tensor(shared.col.astype(np.int64), device=q.device)
        jaccard[r, c] = 1 - s / (2 - s)
        yield start, jaccard.mul_(1 - lambda_value).add_(original.mul_(lambda_value))

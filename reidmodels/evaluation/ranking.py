"""Exact CMC, mAP and mINP from features, a block of queries at a time, in bounded memory.

``rank_metrics`` sorts the whole query x gallery matrix: at MSMT17's size (11,659 x
82,161) that is 19.7 GB and two minutes of sorting. Here each block of queries gets its
distances (one matrix product, on CUDA when present, every CPU thread otherwise), and
then only what decides the metrics is ranked: a query's true matches and the gallery
items closer than its farthest true match. Those few candidates are sorted once, with
the block's rows as the high bits of an integer key, so the cost beyond the matrix
product is a comparison per distance plus a sort of the candidates. The block is sized
from a memory budget, never from Q x G; the worst case (every item a candidate, as with
random features) is bounded too, by ranking the candidates of a few rows at a time.

Rules, the same as ``rank_metrics`` and torchreid's ``evaluate_rank``: a gallery item
with the query's pid and the query's group (camera, or view for view-matched protocols)
is junk, dropped; a query with no match left is skipped; the CMC of a query holds its
last value past the end of its kept gallery. Tied distances rank in gallery order: of
two items at the same distance, the one earlier in the gallery ranks first (a stable
sort), so results never depend on a sort's whim. With ``cosine`` the order is that of
the cosine similarity itself (1 - similarity, as ``pairwise_distance`` gives it, can
round two close similarities to one value; the similarity keeps them apart).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .memory import DEFAULT_MEMORY, default_memory, rows_per_block
from .metrics import expected_random_ap

__all__ = ["DEFAULT_MEMORY", "distance_blocks", "evaluate_protocol", "pick_device", "rank_features", "rows_per_block"]

CANDIDATE_BYTES = 64  # per candidate being ranked: indices, key, order, gathered values


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else the CPU (all its threads)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_tensor(features, device: torch.device, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features, dtype=np.float32) if not torch.is_tensor(features) else features)
    x = x.to(device=device, dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"{name} features must be a (rows, dim) matrix, got shape {tuple(x.shape)}")
    # a chunk at a time: torch.isfinite of the whole gallery would hold temporaries the
    # size of the features (2.5 GB at Market+500k) just to say yes
    if not all(bool(torch.isfinite(x[s : s + 8192]).all()) for s in range(0, len(x), 8192)):
        raise ValueError(f"{name} features hold NaN or infinite values: check the model's output")
    return x


def prepare_features(query, gallery, metric: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides as float32 on ``device`` (no copy of a float32 CPU gallery: at Market+500k
    it is 2.7 GB); the query rows L2-normalised for ``cosine``, the gallery left as it is."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    q, g = _as_tensor(query, device, "query"), _as_tensor(gallery, device, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query features are {q.shape[1]}-d, gallery features {g.shape[1]}-d")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    return q, g


def _gallery_terms(g: torch.Tensor, metric: str, rows: int = 65536) -> torch.Tensor:
    """Per gallery row: 1 / norm (cosine) or the squared norm (euclidean), a chunk at a time."""
    out = torch.empty(len(g), device=g.device)
    for s in range(0, len(g), rows):
        squared = (g[s : s + rows] ** 2).sum(1)
        out[s : s + rows] = 1 / squared.sqrt().clamp_(min=1e-12) if metric == "cosine" else squared
    return out


def distance_blocks(
    q: torch.Tensor, g: torch.Tensor, metric: str, rows: int, *, similarity: bool = False
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, distances)`` of ``rows`` queries at a time: 1 - cosine similarity, or
    the Euclidean distance (as ``pairwise_distance``). ``q`` as ``prepare_features`` leaves it.

    ``similarity`` (cosine): minus the cosine similarity instead, the same order for one
    elementwise pass instead of three; ``rank_features`` ranks by it."""
    terms = _gallery_terms(g, metric)
    if metric == "cosine" and similarity:
        terms = terms.neg()
    for start in range(0, len(q), rows):
        block = q[start : start + rows] @ g.T
        if metric == "cosine":
            block.mul_(terms) if similarity else block.mul_(terms).neg_().add_(1.0)
        else:
            squared = (q[start : start + rows] ** 2).sum(1, keepdim=True)
            block.mul_(-2).add_(squared).add_(terms).clamp_(min=0).sqrt_()
        yield start, block


@dataclass
class _Problem:
    """Labels as integer tensors, and each query's same-pid gallery items (pid-sorted gallery)."""

    q_pids: torch.Tensor
    q_groups: torch.Tensor
    g_groups: torch.Tensor
    by_pid: torch.Tensor  # gallery indices sorted by pid (stable)
    lo: torch.Tensor  # per query: where its pid starts in by_pid
    count: torch.Tensor  # per query: gallery items with its pid
    gallery: int


def _problem(q_pids, g_pids, q_groups, g_groups, device: torch.device) -> _Problem:
    q_pids, g_pids = np.asarray(q_pids).astype(np.int64), np.asarray(g_pids).astype(np.int64)
    q_groups, g_groups = np.asarray(q_groups), np.asarray(g_groups)
    # groups may be camera numbers or view names: one integer code per distinct value
    _, codes = np.unique(np.concatenate([q_groups.astype(str), g_groups.astype(str)]), return_inverse=True)
    by_pid = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[by_pid]
    lo = np.searchsorted(sorted_pids, q_pids, side="left")
    hi = np.searchsorted(sorted_pids, q_pids, side="right")
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64, device=device)  # noqa: E731
    return _Problem(
        q_pids=as_t(q_pids),
        q_groups=as_t(codes[: len(q_pids)]),
        g_groups=as_t(codes[len(q_pids) :]),
        by_pid=as_t(by_pid),
        lo=as_t(lo),
        count=as_t(hi - lo),
        gallery=len(g_pids),
    )


class _Totals:
    """Sums over the valid queries of every block, turned into the metrics at the end."""

    def __init__(self, max_rank: int, per_query: bool = False) -> None:
        self.max_rank = max_rank
        self.per_query: list[tuple[np.ndarray, ...]] | None = [] if per_query else None
        self.first = np.zeros(max_rank + 1, dtype=np.int64)  # queries whose first match is at rank r (last: beyond)
        self.ap = self.inp = self.chance_ap = self.chance_r1 = 0.0
        self.queries = 0

    def add(
        self,
        rows: np.ndarray,
        first: np.ndarray,
        ap: np.ndarray,
        inp: np.ndarray,
        kept: np.ndarray,
        matches: np.ndarray,
    ) -> None:
        if self.per_query is not None:
            self.per_query.append((rows, first, ap))
        self.first += np.bincount(np.minimum(first, self.max_rank + 1) - 1, minlength=self.max_rank + 1)
        self.ap += float(ap.sum())
        self.inp += float(inp.sum())
        self.chance_ap += float(expected_random_ap(kept, matches).sum())
        self.chance_r1 += float((matches / kept).sum())
        self.queries += len(first)

    def result(self) -> dict:
        if not self.queries:
            raise ValueError("no query has a valid match in the gallery")
        cmc = np.cumsum(self.first[: self.max_rank]) / self.queries
        out = {}
        if self.per_query is not None:  # the valid queries (row numbers), their first-match rank and AP
            rows, first, ap = (np.concatenate(parts) for parts in zip(*self.per_query))
            out["per_query"] = {"query": rows, "first_match": first, "ap": ap}
        return out | {
            "cmc": cmc.astype(np.float32),
            "mAP": self.ap / self.queries,
            "mINP": self.inp / self.queries,
            "queries": self.queries,
            "chance_mAP": self.chance_ap / self.queries,
            "chance_rank1": self.chance_r1 / self.queries,
        }


def _sortable(values: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 in the same order (IEEE bits, negatives flipped); -0.0 == 0.0."""
    bits = (values + 0.0).view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + (1 << 31)


def _rank_block(d: torch.Tensor, start: int, p: _Problem, memory: int) -> tuple[np.ndarray, ...]:
    """Query row, first-match rank, AP, INP, kept gallery size and match count of each valid query of
    the block ``d`` (rows ``start`` ..). ``d`` is overwritten (junk set to +inf)."""
    rows, device = d.shape[0], d.device
    local = torch.arange(rows, device=device)
    # every (query, same-pid gallery item) pair of the block
    count = p.count[start : start + rows]
    pair_row = torch.repeat_interleave(local, count)
    first_of_row = torch.cumsum(count, 0) - count
    within = torch.arange(len(pair_row), device=device) - first_of_row[pair_row]
    pair_col = p.by_pid[p.lo[start : start + rows][pair_row] + within]
    junk = p.g_groups[pair_col] == p.q_groups[start + pair_row]
    d[pair_row[junk], pair_col[junk]] = float("inf")
    match_row, match_col = pair_row[~junk], pair_col[~junk]
    matches = torch.bincount(match_row, minlength=rows)
    farthest = torch.full((rows,), float("-inf"), device=device)
    farthest.scatter_reduce_(0, match_row, d[match_row, match_col], reduce="amax")
    is_match = torch.zeros_like(d, dtype=torch.bool)
    is_match[match_row, match_col] = True
    ranks, ranked_rows = [], []
    step = max(1, int(memory // (2 * d.shape[1] * CANDIDATE_BYTES)))  # rows whose candidates may all be ranked at once
    for s in range(0, rows, step):
        r, c = torch.nonzero(d[s : s + step] <= farthest[s : s + step, None], as_tuple=True)
        key = (r << 32) | _sortable(d[s + r, c])  # row-major, then distance; stable: then gallery order
        order = torch.sort(key, stable=True).indices
        r, c = r[order], c[order]
        per_row = torch.bincount(r, minlength=min(step, rows - s))
        rank = torch.arange(len(r), device=device) - (torch.cumsum(per_row, 0) - per_row)[r] + 1
        hit = is_match[s + r, c]
        ranks.append(rank[hit])
        ranked_rows.append(r[hit] + s)
    rank, row = torch.cat(ranks).double(), torch.cat(ranked_rows)  # matches in rank order, row by row
    m = matches.double()
    nth = torch.arange(len(row), device=device) - (torch.cumsum(matches, 0) - matches)[row] + 1  # j of the j-th match
    ap = torch.zeros(rows, dtype=torch.float64, device=device).index_add_(0, row, nth / rank)
    valid = matches > 0
    is_last, is_first = nth == matches[row], nth == 1
    last = torch.zeros(rows, dtype=torch.float64, device=device).index_put_((row[is_last],), rank[is_last])
    first = torch.zeros(rows, dtype=torch.int64, device=device).index_put_((row[is_first],), rank[is_first].long())
    junk_count = torch.bincount(pair_row[junk], minlength=rows)
    kept = p.gallery - junk_count
    out = (local[valid] + start, first[valid], (ap / m)[valid], (m / last)[valid], kept[valid], matches[valid])
    return tuple(t.cpu().numpy() for t in out)


def rank_features(
    query,
    gallery,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_groups: Sequence,
    g_groups: Sequence,
    *,
    metric: str = "cosine",
    max_rank: int = 50,
    rerank: bool | str | dict | None = None,
    memory: int | None = None,
    device: str | torch.device | None = None,
    per_query: bool = False,
) -> dict:
    """CMC, mAP and mINP of ranking ``gallery`` for each ``query`` (feature rows), exactly as
    ``rank_metrics(pairwise_distance(query, gallery, metric), ...)``, in bounded memory.

    ``q_groups`` / ``g_groups``: what "the same camera" means for the junk rule (camera ids,
    or view names for view-matched protocols). ``memory``: bytes for one block's working
    set beyond the features (default 1 GiB on the CPU, a quarter of the free memory on a
    GPU). ``rerank``: k-reciprocal re-ranking (Zhong et al. 2017): ``True`` for k1 = 20,
    k2 = 6, lambda = 0.3, ``"transreid"`` for the TransReID evaluator CLIP-ReID uses (50, 15, 0.3), or a
    dict of ``k1``, ``k2``, ``lambda_value``; see ``reidmodels.evaluation.rerank``.

    Returns ``{"cmc", "mAP", "mINP", "queries"}`` as ``rank_metrics`` does, plus
    ``chance_mAP`` and ``chance_rank1``: the exact expectation of a random ranking of the
    same kept galleries (``expected_random_ap``), the chance baseline at no extra cost.
    Tied distances rank in gallery order (the earlier item first). ``per_query``: also
    ``per_query`` = ``{"query", "first_match", "ap"}``, arrays over the valid queries
    (row numbers of ``query``), for a failure report.
    """
    device = pick_device(device)
    memory = int(memory or default_memory(device))
    q, g = prepare_features(query, gallery, metric, device)
    if (len(q), len(g)) != (len(q_pids), len(g_pids)) or len(q_groups) != len(q) or len(g_groups) != len(g):
        raise ValueError(
            f"{len(q)} query and {len(g)} gallery feature rows for {len(q_pids)}/{len(q_groups)} query "
            f"and {len(g_pids)}/{len(g_groups)} gallery labels (pids/groups)"
        )
    if not len(g):
        raise ValueError("the gallery is empty")
    problem = _problem(q_pids, g_pids, q_groups, g_groups, device)
    totals = _Totals(min(max_rank, len(g)), per_query)
    if rerank:
        from .rerank import rerank_blocks, rerank_settings

        blocks = rerank_blocks(q, g, metric=metric, memory=memory, **rerank_settings(rerank))
    else:
        blocks = distance_blocks(q, g, metric, rows_per_block(len(g), memory), similarity=True)
    for start, d in blocks:
        totals.add(*_rank_block(d, start, problem, memory))
        del d
    return totals.result()


def evaluate_protocol(
    features: np.ndarray,
    dataset,
    protocol: str,
    *,
    metric: str = "cosine",
    max_rank: int = 50,
    rerank: bool | str | dict | None = None,
    memory: int | None = None,
    device: str | torch.device | None = None,
    per_query: bool = False,
) -> dict:
    """Metrics of one protocol of a ``reiddata.ReidDataset``; ``features``: one row per index row.

    The protocol's own match rule decides what "same camera" means: camids, or views.
    """
    spec = dataset.protocols[protocol]
    pids = dataset.index.column("pid").to_numpy()
    key = "camid" if spec.match == "camera" else "view"
    groups = np.asarray(dataset.index.column(key).to_pylist())
    q, g = spec.query, spec.gallery
    out = rank_features(
        features[q],
        features[g],
        pids[q],
        pids[g],
        groups[q],
        groups[g],
        metric=metric,
        max_rank=max_rank,
        rerank=rerank,
        memory=memory,
        device=device,
        per_query=per_query,
    )
    out["match"] = spec.match
    return out

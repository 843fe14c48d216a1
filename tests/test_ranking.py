"""rank_features (blocked, bounded memory) against rank_metrics on the whole matrix; ties;
the random baseline's exact expectation; k-reciprocal re-ranking against a dense reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rerank_reference import dense_rerank

from reidmodels.evaluation import expected_random_ap, pairwise_distance, rank_features, rank_metrics
from reidmodels.evaluation.memory import DENSE_BYTES
from reidmodels.evaluation.rerank import rerank_settings


def _problem(seed: int, queries: int, gallery: int, ids: int = 10, dim: int = 8, integer: bool = False):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(-1, ids + 3, queries), rng.integers(-1, ids + 1, gallery)  # -1 is a pid like any
    q_cams, g_cams = rng.integers(0, 3, queries), rng.integers(0, 3, gallery)
    q, g = rng.standard_normal((queries, dim)), rng.standard_normal((gallery, dim))
    if integer:  # small integers: every distance exact, many exactly tied
        q, g = np.round(q * 1.5), np.round(g * 1.5)
    return q.astype(np.float32), g.astype(np.float32), q_pids, g_pids, q_cams, g_cams


def _memory_for_rows(rows: int, gallery: int) -> int:
    return rows * gallery * DENSE_BYTES


def _assert_equal(out: dict, ref: dict) -> None:
    np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-7)
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
    assert out["queries"] == ref["queries"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("rows", [1, 7, 1000])  # blocks of 1, of 7, and one block larger than Q
def test_equals_rank_metrics(seed, metric, rows):
    q, g, *labels = _problem(seed, queries=23, gallery=150)
    ref = rank_metrics(pairwise_distance(q, g, metric), *labels)
    out = rank_features(q, g, *labels, metric=metric, memory=_memory_for_rows(rows, len(g)), device="cpu")
    _assert_equal(out, ref)
    assert 0 < ref["queries"] < 23  # some queries are skipped: no valid match


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_ties_rank_in_gallery_order(seed, rows):
    q, g, *labels = _problem(seed, queries=20, gallery=120, integer=True)
    distmat = pairwise_distance(q, g, "euclidean")
    assert len(np.unique(distmat)) < distmat.size / 4  # heavily tied
    ref = rank_metrics(distmat, *labels)  # a stable sort: the earlier gallery item first
    _assert_equal(rank_features(q, g, *labels, metric="euclidean", memory=_memory_for_rows(rows, len(g))), ref)


def test_tie_rule_worked_example():
    # gallery: three items at the same distance; the match is the middle one -> rank 2
    g = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    out = rank_features(q, g, [5], [1, 5, 2, 3], [0], [1, 1, 1, 1])
    np.testing.assert_allclose(out["cmc"], [0, 1, 1, 1])
    assert out["mAP"] == pytest.approx(1 / 2)


def test_junk_view_groups_single_item_and_distractors():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    g = np.array([[1.0, 0.1]], dtype=np.float32)
    # view-matched: the same view is junk; a view name is a group like a camera
    out = rank_features(q, g, [1, 1], [1], ["aerial", "ground"], ["aerial"])
    assert out["queries"] == 1 and out["mAP"] == 1.0  # the aerial query's only match is junk
    with pytest.raises(ValueError, match="no query has a valid match"):
        rank_features(q[:1], g, [1], [1], ["aerial"], ["aerial"])
    # distractors (pid -1, camera -1) rank like any wrong item, never junk
    g2 = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    out = rank_features(q[:1], g2, [1], [-1, 1, -1], [0], [-1, 1, -1])
    assert out["mAP"] == pytest.approx(1 / 2) and out["cmc"][0] == 0


def test_bad_features_are_refused():
    q, g, *labels = _problem(0, queries=5, gallery=20)
    with pytest.raises(ValueError, match="feature rows"):
        rank_features(q, g[:10], *labels)
    with pytest.raises(ValueError, match="metric"):
        rank_features(q, g, *labels, metric="manhattan")
    g[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        rank_features(q, g, *labels)


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (5, 2), (6, 3), (7, 7)])
def test_expected_random_ap_is_the_mean_over_every_order(n, m):
    aps = []
    for relevant in itertools.combinations(range(n), m):  # every placement of the matches: equally likely
        ranks = np.array(relevant) + 1.0
        aps.append(np.mean(np.arange(1, m + 1) / ranks))
    assert expected_random_ap(np.array([n]), np.array([m]))[0] == pytest.approx(np.mean(aps), abs=1e-12)


def test_chance_baseline_matches_random_rankings():
    q, g, *labels = _problem(3, queries=40, gallery=200)
    out = rank_features(q, g, *labels)
    rng = np.random.default_rng(0)
    draws = [rank_metrics(rng.random((40, 200)), *labels)["mAP"] for _ in range(300)]
    assert out["chance_mAP"] == pytest.approx(np.mean(draws), rel=0.03)
    assert out["chance_rank1"] == pytest.approx(
        np.mean([rank_metrics(rng.random((40, 200)), *labels)["cmc"][0] for _ in range(300)]), rel=0.1
    )


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k1,k2", [(20, 6), (7, 1), (4, 9)])
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_rerank_equals_the_dense_formula(seed, k1, k2, rows):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, 16))
    q_pids, g_pids = rng.integers(0, 12, 30), rng.integers(0, 12, 130)
    q = (centres[q_pids] + 0.9 * rng.standard_normal((30, 16))).astype(np.float32)
    g = (centres[g_pids] + 0.9 * rng.standard_normal((130, 16))).astype(np.float32)
    cams = rng.integers(0, 4, 30), rng.integers(0, 4, 130)
    labels = (q_pids, g_pids, *cams)
    ref = rank_metrics(dense_rerank(_normalised(q), _normalised(g), k1, k2, 0.3), *labels)
    memory = _memory_for_rows(rows, 160) * 3  # the re-ranked block needs about 3x a plain one
    out = rank_features(q, g, *labels, rerank={"k1": k1, "k2": k2, "lambda_value": 0.3}, memory=memory)
    np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-4)
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-4)
    plain = rank_features(q, g, *labels)
    assert out["mAP"] != pytest.approx(plain["mAP"], abs=1e-3)  # re-ranking did change the order


def test_rerank_settings():
    assert rerank_settings(True) == {"k1": 20, "k2": 6, "lambda_value": 0.3}
    assert rerank_settings("transreid") == {"k1": 50, "k2": 15, "lambda_value": 0.3}
    assert rerank_settings({"k1": 10}) == {"k1": 10, "k2": 6, "lambda_value": 0.3}
    for bad in ({"k3": 1}, {"k1": 0}, {"lambda_value": 2}, "fast"):
        with pytest.raises(ValueError, match="rerank"):
            rerank_settings(bad)

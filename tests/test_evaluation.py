"""rank_metrics against torchreid's evaluate_rank; mINP by fast-reid's definition; protocols."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reiddata import open_dataset
from reidmodels.evaluation import evaluate_protocol, pairwise_distance, rank_metrics


def _torchreid_evaluate_rank():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cython evaluation is unavailable": the Python path is the reference
        rank = pytest.importorskip("torchreid.reid.metrics.rank")
    return rank.evaluate_rank


def _problem(seed: int, queries: int = 30, gallery: int = 200, ids: int = 12, cameras: int = 4):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, ids, queries), rng.integers(0, ids + 3, gallery)  # some gallery-only ids
    q_cams, g_cams = rng.integers(0, cameras, queries), rng.integers(0, cameras, gallery)
    return rng.random((queries, gallery)), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(5))
def test_cmc_and_map_equal_torchreid(seed):
    evaluate_rank = _torchreid_evaluate_rank()
    distmat, q_pids, g_pids, q_cams, g_cams = _problem(seed)
    ours = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50, use_cython=False)
    np.testing.assert_allclose(ours["cmc"], cmc, rtol=1e-6)
    assert ours["mAP"] == pytest.approx(mAP, rel=1e-9)


def _minp_fastreid(distmat, q_pids, g_pids, q_cams, g_cams) -> float:
    """fast-reid's evaluate_rank mINP, restated."""
    values = []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i])
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        raw = (g_pids[order][keep] == q_pids[i]).astype(np.int32)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.max(np.where(raw == 1))
        values.append(cmc[last] / (last + 1.0))
    return float(np.mean(values))


@pytest.mark.parametrize("seed", range(3))
def test_minp_is_fastreids(seed):
    problem = _problem(seed)
    assert rank_metrics(*problem)["mINP"] == pytest.approx(_minp_fastreid(*problem))


def test_worked_example_and_skipped_queries():
    # one query (pid 1, camera 0); gallery ranked by distance: same-camera match (dropped),
    # pid 2, pid 1 (camera 1), pid 3, pid 1 (camera 2)
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids, g_cams = np.array([1, 2, 1, 3, 1]), np.array([0, 0, 1, 0, 2])
    out = rank_metrics(distmat, [1, 9], g_pids, [0, 0], g_cams, max_rank=4)
    assert out["queries"] == 1  # pid 9 has no match: skipped
    np.testing.assert_allclose(out["cmc"], [0, 1, 1, 1])
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert out["mINP"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="no query has a valid match"):
        rank_metrics(distmat[:1], [9], g_pids, [0], g_cams)


def test_distances():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(pairwise_distance(a, a), [[0, 1], [1, 0]], atol=1e-6)
    np.testing.assert_allclose(pairwise_distance(a, a, "euclidean"), [[0, np.sqrt(5)], [np.sqrt(5), 0]], atol=1e-6)


def test_protocols_use_their_own_match_rule(converted):
    ds = open_dataset(converted("cargo"))
    pids = ds.index.column("pid").to_numpy()
    features = np.eye(pids.max() + 1)[pids] + 0.01 * np.random.default_rng(0).random((len(pids), pids.max() + 1))
    by_camera = evaluate_protocol(features, ds, "all")
    by_view = evaluate_protocol(features, ds, "a2g")
    assert by_camera["match"] == "camera" and by_view["match"] == "view"
    assert by_camera["cmc"][0] == pytest.approx(1.0)  # features that are the identity: perfect
    # a2g drops same-view positives: a query only counts with a match from the other view
    views = np.asarray(ds.index.column("view").to_pylist())
    q, g = ds.protocols["a2g"].query, ds.protocols["a2g"].gallery
    expected = sum(any(pids[j] == pids[i] and views[j] != views[i] for j in g) for i in q)
    assert by_view["queries"] == expected < by_camera["queries"] + 1

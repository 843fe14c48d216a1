"""evaluate() at research scale, end to end on tiny runs: the Parquet feature cache, re-ranking
from the command line, a distractor gallery, extraction split over torchrun ranks, and
evaluation during training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import cpu_train_config

from reiddata import convert, open_dataset, synth
from reiddata.cli import main as reiddata_main
from reidmodels.cli import main as reidmodels_main
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.evaluation import evaluate_protocol

TINY = {"p": 3, "k": 2, "stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 2, "lr": 3e-4}}}


@pytest.fixture(scope="module")
def with_distractors(tmp_path_factory):
    root = tmp_path_factory.mktemp("distractors")
    tree = synth("market1501", root / "tree", identities=12, distractors=25)
    out = root / "data"
    convert("market1501", tree, out, shard_size=40, distractors=tree / "distractors")
    return out


@pytest.fixture(scope="module")
def run(with_distractors, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    train(cpu_train_config(with_distractors, out, hparams=TINY, max_steps_per_epoch=2))
    return out


def _eval(data, run, out, **kw) -> dict:
    return evaluate(EvalConfig(data=str(data), checkpoint=str(run), out=str(out), workers=0, device="cpu", **kw))


def test_distractors_are_a_split_and_a_twin_protocol(with_distractors):
    data = open_dataset(with_distractors)
    assert data.manifest["split_order"] == ["train", "query", "gallery", "distractors"]
    assert data.manifest["splits"]["distractors"]["samples"] == 25
    standard, twin = data.protocols["standard"], data.protocols["standard-distractors"]
    assert np.array_equal(standard.query, twin.query)
    splits = np.asarray(data.index.column("split").to_pylist())
    assert len(twin.gallery) == len(standard.gallery) + 25 and set(splits[twin.gallery]) == {"gallery", "distractors"}
    pids = data.index.column("pid").to_numpy()
    assert set(pids[splits == "distractors"]) == {-1} and -1 not in set(pids[standard.query])
    # perfect identity features: the distractors (features of their own) never match, never count as junk
    features = np.eye(pids.max() + 2)[pids] + 0.01 * np.random.default_rng(0).random((len(pids), pids.max() + 2))
    a, b = evaluate_protocol(features, data, "standard"), evaluate_protocol(features, data, "standard-distractors")
    assert a["mAP"] == b["mAP"] == 1.0 and a["queries"] == b["queries"]
    assert b["chance_mAP"] < a["chance_mAP"]  # a larger gallery: a lower random baseline
    assert reiddata_main(["verify", str(with_distractors)]) == 0


def test_synthetic_distractors_are_deterministic_and_unlabeled(tmp_path):
    a = synth("market1501", tmp_path / "a", identities=8, distractors=6)
    b = synth("market1501", tmp_path / "b", identities=8, distractors=6)
    names = sorted(p.name for p in (a / "distractors").iterdir())
    assert names == [f"{n:08d}.jpg" for n in range(1, 7)]
    assert all((a / "distractors" / n).read_bytes() == (b / "distractors" / n).read_bytes() for n in names)


def test_distractors_bad_input(tmp_path, synth_tree):
    tree = synth_tree("market1501")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no .jpg"):
        convert("market1501", tree, tmp_path / "a", distractors=empty)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "x.jpg").symlink_to(next(tree.rglob("*.jpg")))
    with pytest.raises(Exception, match="symbolic link"):
        convert("market1501", tree, tmp_path / "b", distractors=linked)
    with pytest.raises(Exception, match="image sources"):
        convert("mars", synth_tree("mars"), tmp_path / "c", distractors=linked)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_feature_cache_is_parquet_anyone_reads(with_distractors, run, tmp_path):
    first = _eval(with_distractors, run, tmp_path / "eval")
    [cache] = (tmp_path / "eval" / "features").glob("*.parquet")
    table = pq.read_table(cache)
    assert table.column_names == ["key", "pid", "camid", "view", "split", "feature"]
    data = open_dataset(with_distractors)
    assert table.num_rows == len(data.index) - data.manifest["splits"]["train"]["samples"]
    features = np.stack(table.column("feature").to_numpy(zero_copy_only=False))
    assert features.shape[0] == table.num_rows and features.shape[1] > 0 and features.dtype == np.float32
    assert json.loads(table.schema.metadata[b"reidmodels"])["method"] == "clip-reid"
    again = _eval(with_distractors, run, tmp_path / "eval")  # from the cache: the same numbers
    assert again == first
    assert first["standard-distractors"]["mAP"] <= first["standard"]["mAP"]
    assert first["standard-distractors"]["chance_mAP"] < first["standard"]["chance_mAP"]


def test_rerank_from_the_command_line(with_distractors, run, tmp_path):
    params = tmp_path / "params.yaml"
    section = {"data": str(with_distractors), "checkpoint": str(run), "workers": 0, "device": "cpu"}
    params.write_text(yaml.safe_dump({"evaluate": section}))
    assert reidmodels_main(["evaluate", "--params", str(params), "--out", str(tmp_path / "plain")]) == 0
    assert reidmodels_main(["evaluate", "--params", str(params), "--out", str(tmp_path / "rr"), "--rerank"]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())["standard"]
    reranked = json.loads((tmp_path / "rr" / "metrics.json").read_text())["standard"]
    assert reranked["rerank"] is True and "rerank" not in plain
    assert reranked["mAP"] != plain["mAP"] and reranked["queries"] == plain["queries"]
    assert reranked["chance_mAP"] == plain["chance_mAP"]


def test_torchrun_two_processes_extract_what_one_does(with_distractors, run, tmp_path):
    one = _eval(with_distractors, run, tmp_path / "one", batch_size=8)
    params = tmp_path / "params.yaml"
    section = {"data": str(with_distractors), "checkpoint": str(run), "workers": 0, "device": "cpu", "batch_size": 8}
    params.write_text(yaml.safe_dump({"evaluate": section}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "reidmodels", "evaluate", "--params", str(params), "--out", str(tmp_path / "two")]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two == one
    [a] = (tmp_path / "one" / "features").glob("*.parquet")
    [b] = (tmp_path / "two" / "features").glob("*.parquet")
    assert pq.read_table(a).equals(pq.read_table(b))  # the same rows, the same bits


def test_eval_every_logs_metrics_and_leaves_training_unchanged(with_distractors, tmp_path):
    plain = train(cpu_train_config(with_distractors, tmp_path / "a", hparams=TINY, max_steps_per_epoch=2))
    config = cpu_train_config(with_distractors, tmp_path / "b", hparams=TINY, max_steps_per_epoch=2, eval_every=1)
    evaluated = train(config)
    assert evaluated["param_sha256"] == plain["param_sha256"]
    rows = (tmp_path / "b" / "eval_log.csv").read_text().splitlines()
    assert rows[0] == "step,stage,epoch,protocol,mAP,rank1,mINP"
    assert [r.split(",")[1:4] for r in rows[1:]] == [
        ["stage2", str(e), p] for e in (1, 2) for p in ("standard", "standard-distractors")
    ]
    final = _eval(with_distractors, tmp_path / "b", tmp_path / "eval")
    assert float(rows[-2].split(",")[4]) == final["standard"]["mAP"]  # the same path as evaluate

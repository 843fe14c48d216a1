"""Several datasets in one run: namespaced identities and cameras, one sampler over all, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import cpu_train_config, train_and_kill

from reiddata import RandomIdentitySampler, ReidDataError, open_dataset
from reiddata.combine import CombinedShardDataset, combined_version
from reidmodels.engine import TrainConfig, train
from reidmodels.methods import dataset_facts


@pytest.fixture(scope="module")
def pair(converted):
    return [str(converted("market1501")), str(converted("dukemtmc-reid"))]


def test_identities_and_cameras_never_collide(pair):
    a, b = (open_dataset(p) for p in pair)
    raw = [set(d.index.column("pid").to_pylist()) for d in (a, b)]
    assert raw[0] & raw[1], "the synthetic datasets share raw pids: the collision this guards against"
    both = open_dataset(pair)
    assert both.manifest["source"] == "market1501+dukemtmc-reid"
    assert both.version == combined_version([("market1501", a.version), ("dukemtmc-reid", b.version)])
    part = both.index.column("part").to_numpy()
    pids, cams = both.index.column("pid").to_numpy(), both.index.column("camid").to_numpy()
    assert not set(pids[part == 0]) & set(pids[part == 1])
    assert not set(cams[part == 0]) & set(cams[part == 1])
    train = CombinedShardDataset(both, "train", decode=None)
    a_ids, b_ids = a.manifest["splits"]["train"]["ids"], b.manifest["splits"]["train"]["ids"]
    assert sorted(set(train.labels)) == list(range(a_ids + b_ids))  # contiguous over both
    assert dataset_facts(both)["num_classes"] == a_ids + b_ids
    for i in (0, len(train) - 1):  # the items carry the namespaced values, as the arrays say
        item = train[i]
        assert item["label"] == train.labels[i] and item["pid"] == train.pids[i] and item["key"] == train.keys[i]
        row = both.index.slice(int(train.rows[i]), 1).to_pylist()[0]
        assert (row["key"], row["pid"], row["camid"]) == (item["key"], item["pid"], item["camid"])
    assert train.keys[0].startswith("market1501/") and train.keys[-1].startswith("dukemtmc-reid/")
    # a later version of a part is a new combination
    assert combined_version([("market1501", "0" * 16), ("dukemtmc-reid", b.version)]) != both.version


def test_one_sampler_draws_from_both(pair):
    train = CombinedShardDataset(open_dataset(pair), "train", decode=None)
    sampler = RandomIdentitySampler(train.labels, p=4, k=2, seed=0)
    drawn = [train.keys[i].split("/")[0] for batch in sampler for i in batch]
    assert set(drawn) == {"market1501", "dukemtmc-reid"}
    assert min(drawn.count("market1501"), drawn.count("dukemtmc-reid")) > len(drawn) // 4


def test_combinations_are_checked(pair, converted, tmp_path):
    with pytest.raises(ReidDataError, match="the same dataset twice"):
        open_dataset([pair[0], pair[0]])
    with pytest.raises(ReidDataError, match="cannot combine image and tracklet datasets"):
        open_dataset([pair[0], str(converted("mars"))])
    with pytest.raises(ValueError, match="eval_every with several training datasets needs eval_data"):
        train(TrainConfig(data=pair, out=str(tmp_path / "run"), method="clip-reid", backbone="reid-tiny", eval_every=1))
    assert not (tmp_path / "run").exists()  # refused before anything is written


def _trace(run) -> list[dict]:
    return [json.loads(line) for line in (run / "trace-rank0.jsonl").read_text().splitlines()]


def test_a_killed_combined_run_resumes_to_the_same_batches_and_parameters(pair, tmp_path):
    stages = {"stage1": {"epochs": 1, "feature_batch": 16}, "stage2": {"epochs": 2, "lr": 3e-4}}
    options = dict(hparams={"p": 4, "k": 2, "stages": stages}, workers=0, trace=True, checkpoint_every=3)
    config = lambda out: cpu_train_config("", out, **options).__dict__ | {"data": pair}  # noqa: E731
    whole = train(TrainConfig(**config(tmp_path / "whole")))
    expected = _trace(tmp_path / "whole")
    assert {k.split("/")[0] for row in expected for k in row["keys"]} == {"market1501", "dukemtmc-reid"}
    run = tmp_path / "killed"
    section = {k: str(v) if k == "out" else v for k, v in config(run).items()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": section}))
    train_and_kill(tmp_path / "params.yaml", run / "trace-rank0.jsonl", 13)
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["position"]["stage"] == "stage2" and saved["position"]["step"] >= 12  # killed mid-epoch
    resumed = train(TrainConfig(**config(run)))
    assert resumed["batches"] == len(expected) - saved["position"]["step"]
    assert [row["keys"] for row in _trace(run)] == [row["keys"] for row in expected]
    assert resumed["param_sha256"] == whole["param_sha256"]
    assert np.isfinite([row["loss"] for row in _trace(run)]).all()

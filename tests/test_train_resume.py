"""A training run killed mid-epoch (SIGKILL) and resumed equals the uninterrupted run: batches and parameters."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import cpu_train_config, train_and_kill

from reidmodels.engine import train


def _options(workers: int, sampler: str = "balanced") -> dict:
    # 43 train images of 6 identities: stage 1 as 6 feature batches of 8, then 3 epochs of P=1 batches:
    # 6 an epoch with the balanced sampler, one per chunk of 4 with the official one
    stages = {"stage1": {"epochs": 1, "feature_batch": 8}, "stage2": {"epochs": 3, "lr": 3e-4, "batches": "identities"}}
    return dict(hparams={"p": 1, "k": 4, "stages": stages, "sampler": sampler}, workers=workers)


def _trace(run) -> list[dict]:
    return [json.loads(line) for line in (run / "trace-rank0.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("workers,sampler", [(0, "balanced"), (2, "balanced"), (2, "identity")])
def test_a_killed_run_resumes_to_the_same_batches_and_parameters(converted, tmp_path, workers, sampler):
    data = converted("market1501")
    options = _options(workers, sampler)
    whole = train(cpu_train_config(data, tmp_path / "whole", trace=True, checkpoint_every=4, **options))
    expected = _trace(tmp_path / "whole")
    total = len(expected)
    assert [row["step"] for row in expected] == list(range(1, total + 1))
    assert total == 24 if sampler == "balanced" else total > 12  # 6 + 3 x 6, or 6 + 3 x (chunks of 4 a pass)

    run = tmp_path / "killed"
    section = {"train": {**cpu_train_config(data, run, trace=True, checkpoint_every=4, **options).__dict__}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(section))
    train_and_kill(tmp_path / "params.yaml", run / "trace-rank0.jsonl", 10)
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    stopped = saved["position"]["step"]
    assert stopped >= 8 and stopped % 4 == 0 and saved["position"]["stage"] == "stage2"

    resumed = train(cpu_train_config(data, run, trace=True, checkpoint_every=4, **options))
    assert resumed["batches"] == total - stopped  # only what the checkpoint had not done
    assert [row["keys"] for row in _trace(run)] == [row["keys"] for row in expected]
    assert [row["loss"] for row in _trace(run)][stopped:] == [row["loss"] for row in expected][stopped:]
    assert resumed["param_sha256"] == whole["param_sha256"]
    final = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "position" not in final and final["epochs_done"] == {"stage1": 1, "stage2": 3}
    assert not list(run.glob("*.tmp"))

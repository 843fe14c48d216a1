"""Two torchrun "nodes" (c10d rendezvous on 127.0.0.1) train from a dataset served over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter

import yaml
from conftest import cpu_train_config
from servers import HttpServer  # tests/servers.py

from reiddata import open_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(node: int, port: int, params, cache) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    command += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "reid-test"]
    command += ["--rdzv_conf", f"is_host={int(node == 0)}", "--local_addr", "127.0.0.1"]
    command += ["-m", "reidmodels", "train", "--params", str(params)]
    # loopback only: gloo's sockets on lo, each node its own shard cache
    env = {**os.environ, "REIDDATA_CACHE": str(cache), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_nodes_train_from_http_with_disjoint_batches_and_equal_parameters(converted, tmp_path):
    data = converted("market1501")
    server = HttpServer(data.parent)
    try:
        url = f"{server.url}/{data.name}"
        run = tmp_path / "run"
        stages = {"stage1": {"epochs": 1, "feature_batch": 8}, "stage2": {"epochs": 1, "batches": "identities"}}
        hparams = {"p": 1, "k": 4, "stages": stages, "sampler": "balanced"}  # one visit per identity and pass
        section = cpu_train_config(url, run, hparams=hparams, trace=True, checkpoint_every=2).__dict__
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": section}))
        port = _free_port()
        jobs = [_torchrun(node, port, tmp_path / "params.yaml", tmp_path / f"cache-node{node}") for node in (0, 1)]
        outputs = [job.communicate(timeout=300) for job in jobs]
        for job, (_, err) in zip(jobs, outputs):
            assert job.returncode == 0, err[-3000:]
        gets = Counter(server.gets)
    finally:
        server.stop()

    summaries = sorted(
        (json.loads(line) for out, _ in outputs for line in out.splitlines() if line.startswith("{")),
        key=lambda s: s["rank"],
    )
    assert [(s["rank"], s["world_size"]) for s in summaries] == [(0, 2), (1, 2)]
    assert summaries[0]["batches"] == summaries[1]["batches"] == 6  # 6 identities / 2 ranks, two stages
    assert summaries[0]["param_sha256"] == summaries[1]["param_sha256"]

    traces = [[json.loads(line) for line in (run / f"trace-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    for stage in ("stage1", "stage2"):
        keys = [{k for row in trace if row["stage"] == stage for k in row["keys"]} for trace in traces]
        assert keys[0] and keys[1] and not keys[0] & keys[1]  # disjoint batches per rank
    assert (run / "checkpoint.pt").is_file() and not list(run.glob("*.tmp"))  # written by rank 0 alone

    ds = open_dataset(data)
    cached = Counter()  # each node downloads a shard it needs once, into its own cache
    for node in (0, 1):
        cached.update(f"{data.name}/{p.name}" for p in (tmp_path / f"cache-node{node}" / ds.version).glob("*.tar"))
    assert sum(cached.values()) >= len(ds.split_shards("train"))
    assert {name: gets[name] for name in cached} == cached

"""Fixtures: synthetic trees written by `reiddata synth` in tmp_path, and ../shared/real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reiddata import convert, synth

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REIDDATA_SHARED", REPO.parent / "shared"))
REAL = SHARED / "real"


def real_file(*parts: str) -> Path:
    """A file of ../shared/real, or skip the test when it is absent."""
    path = REAL.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real annotation file {path} not available")
    return path


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """synth_tree(source, variant=None, identities=12) -> path, cached per session."""
    cache: dict = {}

    def make(source: str, variant: str | None = None, identities: int = 12) -> Path:
        key = (source, variant, identities)
        if key not in cache:
            out = tmp_path_factory.mktemp("synth") / f"{source}-{variant}-{identities}"
            cache[key] = synth(source, out, identities=identities, variant=variant)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def converted(synth_tree, tmp_path_factory):
    """converted(source, variant=None) -> path of the converted default synth tree."""
    cache: dict = {}

    def make(source: str, variant: str | None = None) -> Path:
        key = (source, variant)
        if key not in cache:
            out = tmp_path_factory.mktemp("shards") / f"{source}-{variant}"
            convert(source, synth_tree(source, variant), out, shard_size=40)
            cache[key] = out
        return cache[key]

    return make


def cpu_train_config(data: Path, out: Path, *, method: str = "clip-reid", hparams: dict | None = None, **rest):
    """A reidmodels TrainConfig for a quick CPU run (no workers unless given): the method's
    official recipe under ``hparams`` overrides."""
    from reidmodels.engine import TrainConfig

    base = {"workers": 0, "device": "cpu", "backbone": "reid-tiny"}
    return TrainConfig(data=str(data), out=str(out), method=method, hparams=hparams or {}, **{**base, **rest})


def train_and_kill(params: Path, trace: Path, lines: int) -> None:
    """Run ``reidmodels train --params PARAMS`` in a process and SIGKILL it (no handler, no
    cleanup: a preemption) once its trace has ``lines`` steps."""
    import os
    import signal
    import subprocess
    import sys
    import time

    job = subprocess.Popen(
        [sys.executable, "-m", "reidmodels", "train", "--params", str(params)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while job.poll() is None and not (trace.is_file() and len(trace.read_text().splitlines()) >= lines):
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL, job.stderr.read().decode()[-2000:]


@pytest.fixture(scope="module")
def http(dataset):
    """Loopback HTTP (Range-capable) over the folder holding the test module's own ``dataset``."""
    from servers import HttpServer  # tests/servers.py

    server = HttpServer(dataset.parent)
    yield server
    server.stop()

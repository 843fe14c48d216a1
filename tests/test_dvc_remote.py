"""Converted shards on a DVC remote (dvc-s3 against the loopback S3 server): push, pull into a fresh clone, verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from servers import S3Server  # tests/servers.py

from reiddata import open_dataset
from reiddata.verify import verify


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.stop()


def _run(*command: str, cwd, env) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _env(s3: S3Server) -> dict[str, str]:
    # no analytics, no updater: DVC talks to the loopback S3 server only
    env = {**os.environ, **s3.environment(), "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return env | git


def _repo_with_dataset(converted, path, env) -> None:
    path.mkdir()
    _run("git", "init", "-q", cwd=path, env=env)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=path, env=env)
    shutil.copytree(converted("market1501"), path / "data" / "market")
    _run(sys.executable, "-m", "dvc", "add", "-q", "data/market", cwd=path, env=env)


def test_push_to_s3_and_pull_into_a_fresh_clone(converted, s3, tmp_path):
    env = _env(s3)
    s3.client().create_bucket(Bucket="dvc-store")
    repo = tmp_path / "lab"
    _repo_with_dataset(converted, repo, env)
    dvc = (sys.executable, "-m", "dvc")
    _run(*dvc, "remote", "add", "-d", "store", "s3://dvc-store/cache", cwd=repo, env=env)
    _run(*dvc, "remote", "modify", "store", "endpointurl", s3.endpoint, cwd=repo, env=env)
    _run("git", "add", "-A", cwd=repo, env=env)
    _run("git", "commit", "-qm", "shards", cwd=repo, env=env)
    _run(*dvc, "push", cwd=repo, env=env)
    stored = s3.client().list_objects_v2(Bucket="dvc-store", Prefix="cache/")["KeyCount"]
    assert stored == len(list((repo / "data" / "market").iterdir())) + 1  # every file, and the folder listing

    clone = tmp_path / "elsewhere"
    _run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path, env=env)
    assert not (clone / "data" / "market").exists()
    _run(*dvc, "pull", cwd=clone, env=env)
    assert verify(clone / "data" / "market") == []
    assert open_dataset(clone / "data" / "market").version == open_dataset(repo / "data" / "market").version


def test_a_worktree_remote_keeps_the_layout_so_open_dataset_reads_it_directly(converted, s3, tmp_path, monkeypatch):
    """A version-aware worktree remote stores files under their own paths: the pushed dataset is a dataset URL."""
    env = _env(s3)
    client = s3.client()
    client.create_bucket(Bucket="lab-tree")
    client.put_bucket_versioning(Bucket="lab-tree", VersioningConfiguration={"Status": "Enabled"})
    repo = tmp_path / "lab"
    _repo_with_dataset(converted, repo, env)
    dvc = (sys.executable, "-m", "dvc")
    _run(*dvc, "remote", "add", "-d", "tree", "s3://lab-tree/project", cwd=repo, env=env)
    _run(*dvc, "remote", "modify", "tree", "endpointurl", s3.endpoint, cwd=repo, env=env)
    _run(*dvc, "remote", "modify", "tree", "worktree", "true", cwd=repo, env=env)
    _run(*dvc, "push", cwd=repo, env=env)
    for key, value in s3.environment().items():
        monkeypatch.setenv(key, value)
    url = "s3://lab-tree/project/data/market"
    assert open_dataset(url, cache_dir=tmp_path / "cache").version == open_dataset(repo / "data" / "market").version
    assert verify(url) == []

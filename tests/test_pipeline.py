"""The DVC pipeline (dvc.yaml + params.yaml) as DVC itself resolves it: every registered
source and method is in it, and what `dvc repro` wrote says every run beat chance.

The reports under reports/ are committed and rewritten by `dvc repro` (CI runs it
before the tests), so the checks on them read the latest run's figures."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from conftest import REPO
from dvc.repo import Repo

from reiddata.sources import SOURCES
from reidmodels import METHODS
from reidmodels.engine import TrainConfig, load_config
from reidmodels.report import read_runs, write_summary

PARAMS = REPO / "params.yaml"
MARGIN = 0.05  # every protocol's mAP at least this far above its chance mAP


@pytest.fixture(scope="module")
def stages() -> dict:
    """Stage address (``train@latex-cargo``) -> its command, as `dvc repro` would run it."""
    with Repo(str(REPO)) as repo:
        return {stage.addressing: stage.cmd for stage in repo.index.stages}


def test_every_registered_source_is_synthesised_converted_and_summarised(stages):
    sources = yaml.safe_load(PARAMS.read_text())["sources"]
    assert sorted(sources) == sorted(SOURCES)
    for source in SOURCES:
        assert shlex.split(stages[f"synth@{source}"])[:4] == ["reiddata", "synth", source, f"data/synth/{source}"]
        assert shlex.split(stages[f"convert@{source}"])[:3] == ["reiddata", "convert", source]
        assert f"--metrics reports/stats/{source}.json" in stages[f"stats@{source}"]


def test_every_registered_method_is_trained_and_evaluated_on_its_dataset(stages):
    runs = read_runs(PARAMS)
    assert {method for method, _ in runs.values()} == set(METHODS)
    assert {source for _, source in runs.values()} <= set(SOURCES)
    for name, (method, source) in runs.items():
        train = shlex.split(stages[f"train@{name}"])
        assert train[train.index("--data") + 1] == f"data/shards/{source}"
        assert train[train.index("--report") + 1] == f"reports/runs/{method}/{source}"
        config = load_config(TrainConfig, PARAMS, ["train", f"runs.{name}.train"], data="d", out="o")
        assert (config.method, config.backbone) == (method, "reid-tiny")
        evaluate = shlex.split(stages[f"evaluate@{name}"])
        assert evaluate[evaluate.index("--out") + 1] == f"reports/runs/{method}/{source}"
    assert "summary" in stages


def test_the_latest_repro_put_every_protocol_of_every_run_above_chance():
    for method, source in read_runs(PARAMS).values():
        folder = REPO / "reports" / "runs" / method / source
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["method"], metrics["dataset"]) == (method, source)
        protocols = {k: v for k, v in metrics.items() if isinstance(v, dict) and "mAP" in v}
        assert protocols, f"{method} on {source}: no protocol evaluated"
        for name, m in protocols.items():
            assert m["mAP"] - m["chance_mAP"] >= MARGIN, f"{method} on {source}, {name}: {m}"
            headline = json.loads((folder / "protocols" / f"{name}.json").read_text())  # the DVC metrics file
            assert headline == {k: m[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP", "chance_mAP", "queries")}


def test_the_summary_has_one_row_per_dataset_and_per_run_and_protocol():
    summary = (REPO / "reports" / "summary.md").read_text()
    for source in SOURCES:
        stats = json.loads((REPO / "reports" / "stats" / f"{source}.json").read_text())
        assert f"| {source} | {stats['samples']} | " in summary
    for method, source in read_runs(PARAMS).values():
        metrics = json.loads((REPO / "reports" / "runs" / method / source / "metrics.json").read_text())
        for name, m in metrics.items():
            if isinstance(m, dict) and "mAP" in m:
                assert f"| {method} | {source} | {name} | {m['rank1']:.3f} | {m['mAP']:.3f} |" in summary


def _report(folder, protocols: dict, seconds: float) -> None:
    folder.mkdir(parents=True)
    metrics = {"method": "m", "dataset": "d"}
    for name, (m, chance) in protocols.items():
        metrics[name] = {"mAP": m, "rank1": m + 0.1, "mINP": m - 0.1, "chance_mAP": chance}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train.json").write_text(json.dumps({"seconds": seconds}))


def test_summary_table_and_chart_from_the_runs(tmp_path):
    params = tmp_path / "params.yaml"
    runs = {"a-x": {"source": "cargo", "train": {"method": "latex"}}, "b": {"source": "mars", "train": {"method": "v"}}}
    params.write_text(yaml.safe_dump({"runs": runs}))
    _report(tmp_path / "r" / "latex" / "cargo", {"all": (0.5, 0.1), "a2g": (0.25, 0.05)}, 61.2)
    _report(tmp_path / "r" / "v" / "mars", {"standard": (0.3, 0.2)}, 9.0)
    table = write_summary(params=params, reports=tmp_path / "r", out=tmp_path / "out" / "summary.md")
    assert "## Datasets" not in (tmp_path / "out" / "summary.md").read_text()  # no stats folder given
    rows = [line for line in table.splitlines() if line.startswith("| latex") or line.startswith("| v ")]
    assert rows == [
        "| latex | cargo | a2g | 0.350 | 0.250 | 0.150 | 0.050 | +0.200 | 61 s |",
        "| latex | cargo | all | 0.600 | 0.500 | 0.400 | 0.100 | +0.400 | 61 s |",
        "| v | mars | standard | 0.400 | 0.300 | 0.200 | 0.200 | +0.100 | 9 s |",
    ]
    assert (tmp_path / "out" / "summary.md").read_text().endswith(table)
    png = (tmp_path / "out" / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    write_summary(params=params, reports=tmp_path / "r", out=tmp_path / "again" / "summary.md")
    assert (tmp_path / "again" / "summary.png").read_bytes() == png  # same rows, same bytes


def test_summary_lists_the_datasets_from_the_stats_metrics(tmp_path, converted):
    from reiddata.cli import main as reiddata_main

    data = converted("cargo")
    assert reiddata_main(["stats", str(data), "--metrics", str(tmp_path / "stats" / "cargo.json")]) == 0
    runs = {"a": {"source": "cargo", "train": {"method": "latex"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"sources": {"cargo": {}}, "runs": runs}))
    _report(tmp_path / "r" / "latex" / "cargo", {"all": (0.5, 0.1)}, 3.0)
    write_summary(
        params=tmp_path / "params.yaml", reports=tmp_path / "r", out=tmp_path / "s.md", stats=tmp_path / "stats"
    )
    headline = json.loads((tmp_path / "stats" / "cargo.json").read_text())
    assert (headline["cameras"], headline["views"], headline["protocols"], headline["attributes"]) == (13, 2, 4, 0)
    train, query, gallery = (headline["splits"][s] for s in ("train", "query", "gallery"))
    sides = " | ".join(f"{s['samples']} ({s['ids']})" for s in (train, query, gallery))
    row = f"| cargo | {headline['samples']} | {sides} | 13 | 2 | 4 | 0 |"
    assert row in (tmp_path / "s.md").read_text()


def test_summary_names_a_missing_run_and_a_collision(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"runs": {"a": {"source": "cargo", "train": {"method": "latex"}}}}))
    with pytest.raises(FileNotFoundError, match=r"latex/cargo/metrics.json: missing; run `dvc repro`"):
        write_summary(params=params, reports=tmp_path, out=tmp_path / "s.md")
    twice = {name: {"source": "cargo", "train": {"method": "latex"}} for name in ("a", "b")}
    params.write_text(yaml.safe_dump({"runs": twice}))
    with pytest.raises(ValueError, match="two runs share a method and source"):
        read_runs(params)


def test_params_sections_merge_in_order_and_a_missing_one_is_named(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(
        yaml.safe_dump({"train": {"backbone": "reid-tiny", "seed": 3}, "runs": {"x": {"train": {"seed": 7}}}})
    )
    config = load_config(TrainConfig, params, ["train", "runs.x.train"], data="d", out="o", method="latex")
    assert (config.backbone, config.seed, config.method) == ("reid-tiny", 7, "latex")
    with pytest.raises(ValueError, match=r"no section 'runs.y.train'"):
        load_config(TrainConfig, params, ["train", "runs.y.train"], data="d", out="o", method="latex")


def test_the_cli_runs_one_pipeline_run_end_to_end(tmp_path, converted):
    from reidmodels.cli import main

    stages = {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}
    run = {"source": "market1501", "train": {"method": "clip-reid", "hparams": {"p": 2, "k": 2, "stages": stages}}}
    params = tmp_path / "params.yaml"
    shared = {"backbone": "reid-tiny", "workers": 0, "device": "cpu", "max_steps_per_epoch": 1}
    params.write_text(
        yaml.safe_dump({"train": shared, "runs": {"x": run}, "evaluate": {"workers": 0, "device": "cpu"}})
    )
    data, reports = str(converted("market1501")), tmp_path / "reports"
    folder = reports / "clip-reid" / "market1501"
    common = ["--params", str(params), "--data", data]
    train = ["train", *common, "--section", "train", "--section", "runs.x.train", "--out", str(tmp_path / "run")]
    assert main([*train, "--report", str(folder)]) == 0
    assert json.loads((folder / "train.json").read_text())["batches"] == 2
    assert set(json.loads((folder / "train.json").read_text())) == {"seconds", "batches"}
    lines = (folder / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,stage,epoch,loss" and [line.split(",")[1] for line in lines[1:]] == ["stage1", "stage2"]
    assert main(["evaluate", *common, "--checkpoint", str(tmp_path / "run"), "--out", str(folder)]) == 0
    assert set(json.loads((folder / "protocols" / "standard.json").read_text())) == {
        "rank1",
        "rank5",
        "rank10",
        "mAP",
        "mINP",
        "chance_mAP",
        "queries",
    }
    assert main(["summary", "--params", str(params), "--reports", str(reports), "--out", str(tmp_path / "s.md")]) == 0
    assert "| clip-reid | market1501 | standard |" in (tmp_path / "s.md").read_text()

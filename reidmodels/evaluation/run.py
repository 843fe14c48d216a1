"""``evaluate(config)``: a trained run scored on every protocol of a converted dataset.

Features come from the Parquet cache when it holds this (dataset version, checkpoint,
clip sampling), else from the model (split over ranks under ``torchrun``). Every
protocol is ranked with its own match rule by ``rank_features`` (bounded memory,
optionally re-ranked), the chance baseline is the exact expectation of a random
ranking, and the method adds its extra metrics. Reports: ``metrics.json``,
``protocols/<name>.json`` (one row per protocol for ``dvc metrics show``), ``cmc.csv``,
and with ``report`` the failure report page (``failures``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reiddata import open_dataset

from ..factory import build_model_from_checkpoint
from ..methods import dataset_facts
from ..runtime import device_for, distributed_init
from .features import cache_name, extract_features, read_feature_cache, test_rows, write_feature_cache
from .ranking import evaluate_protocol

__all__ = ["EvalConfig", "HEADLINE", "evaluate", "score", "write_reports"]

HEADLINE = ("rank1", "rank5", "rank10", "mAP", "mINP", "chance_mAP", "queries")


@dataclass
class EvalConfig:
    data: str
    checkpoint: str  # a run folder or its checkpoint.pt
    out: str  # metrics.json, cmc.csv, protocols/
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    clip_length: int | None = None  # tracklets: None = the method's recipe
    clip_mode: str | None = None
    metric: str = "cosine"
    cache: str | None = None  # feature cache folder (default: <out>/features)
    rerank: bool | str | dict | None = None  # k-reciprocal: true (20, 6, 0.3), "transreid" (50, 15, 0.3) or a dict
    memory_gb: float | None = None  # ranking working set per block (default: 1 on the CPU, 1/4 of free GPU memory)
    max_rank: int = 50
    report: str | None = None  # also write the failure report page into this folder (see ``failures``)
    report_queries: int = 20  # worst queries per protocol, and as many drawn at random
    report_top_k: int = 10
    report_seed: int = 0


def check_schema(model, info: dict, data) -> None:
    """A model that reads attributes scores only datasets of the attribute schema it was trained on
    (any other is fine for the rest: cross-domain runs, e.g. Market-1501 -> DukeMTMC-reID)."""
    if not {"attributes", "sid"} & set(type(model).fields):
        return
    trained, here = info["facts"], dataset_facts(data)
    keys = ("attribute_names", "attribute_values")
    if any(trained[k] != here[k] for k in keys):
        raise ValueError(
            f"{data.path}: {info['method']} reads attributes and was trained on another attribute schema "
            f"({trained['attribute_names'] or 'none'}; this dataset: {here['attribute_names'] or 'none'}): "
            "evaluate it on a dataset with the same attributes"
        )


def test_features(model, info: dict, data, config: EvalConfig, *, device, rank: int = 0, world: int = 1):
    """(rows, features, predictions) of the test items on rank 0 (features None elsewhere)."""
    recipe = info["recipe"]
    rows = test_rows(data)
    clip_mode, clip_length = config.clip_mode or recipe["clip_mode"], config.clip_length or recipe["clip_length"]
    cache = Path(config.cache or Path(config.out) / "features") / cache_name(
        data.version, info["sha256"], clip_mode, clip_length
    )
    if cache.is_file():  # features depend only on the dataset version, the checkpoint and the clip sampling
        return (rows, *read_feature_cache(cache, data, rows)) if rank == 0 else (rows, None, None)
    features, predictions = extract_features(
        model,
        data,
        rows,
        recipe=recipe,
        facts=info["facts"],
        batch_size=config.batch_size,
        workers=config.workers,
        device=device,
        clip_mode=clip_mode,
        clip_length=clip_length,
        rank=rank,
        world=world,
    )
    if rank == 0:
        about = {"method": info["method"], "checkpoint": info["sha256"], "dataset_version": data.version}
        about |= {"clip_mode": clip_mode, "clip_length": clip_length}
        write_feature_cache(cache, data, rows, features, predictions, about)
    return rows, features, predictions


def score(
    model, data, rows: np.ndarray, features: np.ndarray, predictions, config: EvalConfig, device, *, per_query=False
) -> tuple:
    """``(metrics, cmc rows, per protocol per-query results)``: every protocol, its chance
    baseline and the method's extra metrics; the per-query APs only with ``per_query``
    and no re-ranking (a failure report ranks by the plain distance)."""
    full = np.zeros((len(data.index), features.shape[1]), dtype=np.float32)
    full[rows] = features
    metrics, cmc_rows, ranked = {}, [], {}
    per_query = per_query and not config.rerank
    memory = int(config.memory_gb * 2**30) if config.memory_gb else None
    for name in data.protocols:
        result = evaluate_protocol(
            full, data, name, metric=config.metric, max_rank=config.max_rank, rerank=config.rerank,
            memory=memory, device=device, per_query=per_query,
        )  # fmt: skip
        if per_query:
            ranked[name] = result
        cmc = result["cmc"]
        metrics[name] = {
            "mAP": round(result["mAP"], 4),
            "mINP": round(result["mINP"], 4),
            "rank1": round(float(cmc[0]), 4),
            "rank5": round(float(cmc[min(4, len(cmc) - 1)]), 4),
            "rank10": round(float(cmc[min(9, len(cmc) - 1)]), 4),
            "queries": result["queries"],
            "match": result["match"],
            "chance_mAP": round(result["chance_mAP"], 4),
            "chance_rank1": round(result["chance_rank1"], 4),
        }
        if config.rerank:
            metrics[name]["rerank"] = config.rerank
        cmc_rows += [{"protocol": name, "rank": r + 1, "cmc": round(float(v), 4)} for r, v in enumerate(cmc)]
    if predictions is not None:
        metrics.update(model.extra_metrics(data, rows, predictions, full))
    return metrics, cmc_rows, ranked


def write_reports(out: Path, metrics: dict, cmc_rows: list[dict], protocols) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    folder = out / "protocols"  # one file per protocol: `dvc metrics show` gives a row each
    folder.mkdir(exist_ok=True)
    for name in protocols:  # names passed the manifest's protocol-name rule (a-z, 0-9, _, -)
        (folder / f"{name}.json").write_text(json.dumps({k: metrics[name][k] for k in HEADLINE}, indent=2) + "\n")
    with (out / "cmc.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["protocol", "rank", "cmc"])
        writer.writeheader()
        writer.writerows(cmc_rows)


def _card_metrics(checkpoint: str, model, info: dict, metrics: dict) -> None:
    """Add these metrics to the model card beside the checkpoint (when it is ours and writable)."""
    from ..card import write_model_card

    folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    try:
        write_model_card(folder, info=info, model=model, metrics=metrics)
    except OSError as exc:  # a read-only run folder: the metrics are in the reports all the same
        print(f"note: model card not updated in {folder} ({exc.strerror or exc})")


def evaluate(config: EvalConfig) -> dict:
    """Score the checkpoint on every protocol; write the reports (rank 0). Returns the
    metrics on rank 0 and ``{}`` on the other ranks of a ``torchrun`` job."""
    rank, world, local_rank = distributed_init(config.device)
    device = device_for(config.device, local_rank)
    model, _, info = build_model_from_checkpoint(config.checkpoint, device=device)
    data = open_dataset(config.data)
    check_schema(model, info, data)
    rows, features, predictions = test_features(model, info, data, config, device=device, rank=rank, world=world)
    if rank != 0:
        return {}
    metrics = {"dataset": data.manifest["source"], "version": data.version, "checkpoint": info["sha256"]}
    metrics["method"] = info["method"]
    ranking_device = device if device.type == "cuda" else torch.device("cpu")
    report = bool(config.report)
    scored, cmc_rows, ranked = score(model, data, rows, features, predictions, config, ranking_device, per_query=report)
    metrics.update(scored)
    write_reports(Path(config.out), metrics, cmc_rows, data.protocols)
    _card_metrics(config.checkpoint, model, info, metrics)
    if report:
        from .failures import ReportSettings, write_failure_report

        full = np.zeros((len(data.index), features.shape[1]), dtype=np.float32)
        full[rows] = features
        settings = ReportSettings(
            worst=config.report_queries, sample=config.report_queries, top_k=config.report_top_k,
            seed=config.report_seed,
        )  # fmt: skip
        write_failure_report(
            Path(config.report), data=data, features=full, test=rows, metrics=metrics, cmc_rows=cmc_rows,
            ranked=ranked, metric=config.metric, settings=settings, reranked=bool(config.rerank),
        )  # fmt: skip
    return metrics

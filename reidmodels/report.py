"""Reports for the DVC pipeline: a run's training time and loss log, and one summary of
every run (``reports/summary.md`` and a PNG beside it).

The runs are the ``runs`` section of params.yaml, each ``{source, train: {method, ...}}``;
their reports lie in ``<reports>/<method>/<source>/`` so a path names the method and the
dataset: ``train.json`` and ``loss.csv`` (written by ``reidmodels train --report``),
``metrics.json`` and ``cmc.csv`` (``reidmodels evaluate``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

__all__ = ["cross_rows", "read_runs", "read_sources", "summary_rows", "write_summary", "write_train_report"]


def write_train_report(*, run: str | Path, result: dict, out: str | Path) -> None:
    """``out/train.json`` (seconds, batches: numbers only, a DVC metrics file) and
    ``out/loss.csv`` (the run's per-epoch loss log: step, stage, epoch, loss)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keep = ("seconds", "batches")
    (out / "train.json").write_text(json.dumps({k: result[k] for k in keep}, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(Path(run) / "train_log.csv", out / "loss.csv")


def read_sources(params: str | Path) -> list[str]:
    """The converted sources, from the ``sources`` section of a params file (may be empty)."""
    import yaml

    return list((yaml.safe_load(Path(params).read_text()) or {}).get("sources") or {})


def read_runs(params: str | Path) -> dict[str, tuple[str, str]]:
    """Run name -> (method, source), from the ``runs`` section of a params file."""
    import yaml

    runs = (yaml.safe_load(Path(params).read_text()) or {}).get("runs") or {}
    table = {}
    for name, run in runs.items():
        try:
            table[name] = (run["train"]["method"], run["source"])
        except (KeyError, TypeError):
            raise ValueError(f"{params} [runs.{name}]: needs `source` and `train: {{method: ...}}`") from None
    seen = sorted(table.values())
    if len(set(seen)) < len(seen):
        raise ValueError(f"{params} [runs]: two runs share a method and source (their reports would collide)")
    return table


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` (or the run's train and evaluate stages)")
    return json.loads(path.read_text())


def summary_rows(*, params: str | Path, reports: str | Path) -> list[dict]:
    """One row per run and protocol: method, dataset, protocol, rank1, mAP, mINP, chance_mAP, seconds."""
    rows = []
    for method, source in read_runs(params).values():
        folder = Path(reports) / method / source
        metrics, trained = _read_json(folder / "metrics.json"), _read_json(folder / "train.json")
        for protocol, m in sorted(metrics.items()):
            if isinstance(m, dict) and "mAP" in m:
                rows.append(
                    {
                        "method": method,
                        "dataset": source,
                        "protocol": protocol,
                        "rank1": m["rank1"],
                        "mAP": m["mAP"],
                        "mINP": m["mINP"],
                        "chance_mAP": m["chance_mAP"],
                        "seconds": trained["seconds"],
                    }
                )
    return rows


def _dataset_table(params: str | Path, stats: Path) -> str:
    """One row per converted source, from ``reiddata stats --metrics`` files."""
    lines = [
        "| dataset | samples | train (ids) | query (ids) | gallery (ids) | cameras | views | protocols | attributes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for source in read_sources(params):
        h = _read_json(stats / f"{source}.json")
        sides = [h["splits"].get(split) for split in ("train", "query", "gallery")]
        cells = [f"{s['samples']} ({s['ids']})" if s else "-" for s in sides]
        lines.append(
            f"| {source} | {h['samples']} | {' | '.join(cells)} | {h['cameras']} | {h['views']} | "
            f"{h['protocols']} | {h['attributes']} |"
        )
    return "\n".join(lines) + "\n"


def _scores(r: dict) -> list[str]:
    """Rank-1, mAP, mINP, chance mAP and the margin over chance, as the tables print them."""
    return [f"{r['rank1']:.3f}", f"{r['mAP']:.3f}", f"{r['mINP']:.3f}", f"{r['chance_mAP']:.3f}",
            f"{r['mAP'] - r['chance_mAP']:+.3f}"]  # fmt: skip


def _markdown(header: list[str], left: int, rows: list[list[str]]) -> str:
    """A Markdown table: the first ``left`` columns left-aligned, the rest (numbers) right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * left + "---:|" * (len(header) - left)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SCORES = ["Rank-1", "mAP", "mINP", "chance mAP", "mAP - chance"]


def _table(rows: list[dict]) -> str:
    body = [[r["method"], r["dataset"], r["protocol"], *_scores(r), f"{r['seconds']:.0f} s"] for r in rows]
    return _markdown(["method", "dataset", "protocol", *SCORES, "training"], 3, body)


def _chart(rows: list[dict], path: Path) -> None:
    """mAP per run and protocol as bars, chance mAP as a black tick on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['method']}\n{r['dataset']}\n{r['protocol']}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows)), 4.2))
    ax.bar(x, [r["mAP"] for r in rows], color="#4c72b0", label="mAP")
    ax.scatter(x, [r["chance_mAP"] for r in rows], marker="_", s=400, color="black", label="chance mAP")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mAP (synthetic test set)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same rows, same bytes
    plt.close(fig)


def cross_rows(*, params: str | Path, cross: str | Path) -> list[dict]:
    """One row per cross-domain evaluation and protocol (``cross_domain`` of params.yaml)."""
    import yaml

    entries = (yaml.safe_load(Path(params).read_text()) or {}).get("cross_domain") or {}
    rows = []
    for name, entry in entries.items():
        try:
            method, trained_on, source = entry["method"], entry["trained_on"], entry["source"]
        except (KeyError, TypeError):
            raise ValueError(f"{params} [cross_domain.{name}]: needs method, trained_on and source") from None
        metrics = _read_json(Path(cross) / name / "metrics.json")
        for protocol, m in sorted(metrics.items()):
            if isinstance(m, dict) and "mAP" in m:
                rows.append({"method": method, "trained_on": trained_on, "dataset": source, "protocol": protocol,
                             "rank1": m["rank1"], "mAP": m["mAP"], "mINP": m["mINP"],
                             "chance_mAP": m["chance_mAP"]})  # fmt: skip
    return rows


def _cross_table(rows: list[dict]) -> str:
    body = [[r["method"], r["trained_on"], r["dataset"], r["protocol"], *_scores(r)] for r in rows]
    return _markdown(["method", "trained on", "evaluated on", "protocol", *SCORES], 4, body)


def write_summary(
    *,
    params: str | Path,
    reports: str | Path,
    out: str | Path,
    stats: str | Path | None = None,
    cross: str | Path | None = None,
) -> str:
    """Write the runs' table to ``out`` (Markdown, after a table of the datasets when ``stats``,
    the folder of ``reiddata stats --metrics`` files, is given) and the chart beside it
    (``.png``), then the cross-domain table when ``cross`` (its reports folder) is given;
    return the runs' table."""
    rows = summary_rows(params=params, reports=reports)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = _table(rows)
    text = "# `dvc repro` on the embedded synthetic default\n\n"
    if stats is not None:
        text += "## Datasets (synthetic, each in its source's real layout)\n\n" + _dataset_table(params, Path(stats))
        text += "\n"
    text += (
        "## Every method on its dataset\n\n"
        "Tiny backbones from random weights on the synthetic datasets: the figures show the\n"
        "pipeline end to end, not the papers' numbers. Chance mAP: random features, same protocol.\n\n"
    )
    crossed = ""
    if cross is not None and cross_rows(params=params, cross=cross):
        crossed = (
            "\n## Trained on one dataset, evaluated on another\n\n"
            "Cross-domain (and combined-training) runs of `cross_domain` in params.yaml: the model of\n"
            "`method` trained on `trained on` (a `+` joins the datasets of a combined run), scored on\n"
            "every protocol of `evaluated on`.\n\n" + _cross_table(cross_rows(params=params, cross=cross))
        )
    out.write_text(text + table + crossed + _report_links(params, Path(reports), out.parent))
    _chart(rows, out.with_suffix(".png"))
    return table


def _report_links(params: str | Path, reports: Path, base: Path) -> str:
    """Links to each run's failure report (``reidmodels evaluate --report``), where there is one."""
    links = []
    for method, source in read_runs(params).values():
        page = reports / method / source / "failures" / "index.html"
        if page.is_file():
            links.append(f"- [{method} on {source}]({os.path.relpath(page, base)})")
    if not links:
        return ""
    return (
        "\n## Failure reports\n\n"
        "Per protocol, the worst queries by AP and a random sample, each with its top 10 gallery items,\n"
        "the CMC and a t-SNE map of the test features (pages that open from disk):\n\n" + "\n".join(links) + "\n"
    )

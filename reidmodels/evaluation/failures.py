"""The failure report: per protocol, the queries a model gets wrong, with what it ranked first.

``reidmodels evaluate --report DIR`` (and the DVC ``evaluate`` stages) write a page,
``DIR/index.html``, opening from disk: for each protocol its figures and the queries
ranked by AP, worst first, then a seeded random sample (each labelled as such: the
worst alone make a model look worse than its mAP says), each with its top ``top_k``
gallery items (thumbnail, a tracklet's middle frame; key, distance, camera and view) bordered green for a true
match, red for a wrong one and dashed grey for junk (the query's identity seen from its
own camera or view, which the protocol ignores). Beside it ``cmc.png`` (one line per
protocol) and ``embedding.png``: t-SNE of up to ``points`` test features, coloured by
identity and by view, queries drawn as crosses.

The report ranks by the model's own distance (as ``pairwise_distance`` gives it). With
re-ranking on, the metrics are re-ranked ones, and the report's APs and lists come from
a separate plain ranking, said on the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reiddata.pages.html import write_page, written_page
from reiddata.pages.thumbs import PER_SHEET, SHEET_COLUMNS, TILE, Tile, render_sheets

from .ranking import distance_blocks, evaluate_protocol, prepare_features

__all__ = ["ReportSettings", "pick_queries", "write_failure_report"]


@dataclass(frozen=True)
class ReportSettings:
    worst: int = 20  # the lowest-AP queries of each protocol
    sample: int = 20  # and a seeded random sample of the others
    top_k: int = 10
    seed: int = 0
    points: int = 1500  # test features in the embedding map (a seeded sample beyond that)


def pick_queries(ap: np.ndarray, *, worst: int, sample: int, seed: int) -> list[tuple[str, int]]:
    """``(kind, position)`` pairs: the ``worst`` lowest APs (ties: the earlier query), then
    ``sample`` others drawn at random with ``seed`` (in query order)."""
    order = np.argsort(ap, kind="stable")
    chosen = [("worst", int(i)) for i in order[:worst]]
    rest = order[worst:]
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.choice(rest, size=min(sample, len(rest)), replace=False)) if len(rest) else []
    return chosen + [("random", int(i)) for i in drawn]


def _top(features: np.ndarray, q_rows: np.ndarray, g_rows: np.ndarray, metric: str, k: int):
    """(gallery positions, distances) of the ``k`` nearest gallery items of each query row (ties: gallery order)."""
    q, g = prepare_features(features[q_rows], features[g_rows], metric, torch.device("cpu"))
    positions, distances = [], []
    for _, block in distance_blocks(q, g, metric, 256):
        order = torch.sort(block, dim=1, stable=True).indices[:, :k]
        positions.append(order.numpy())
        distances.append(torch.gather(block, 1, order).numpy())
    return np.concatenate(positions), np.concatenate(distances)


class _Tiles:
    """Index rows to thumbnail numbers, each row drawn once (a tracklet: its middle frame)."""

    def __init__(self, data) -> None:
        self.of: dict[int, int] = {}
        self.frames = data.index.column("num_frames").to_pylist() if data.kind == "video" else None

    def __call__(self, row: int) -> int:
        return self.of.setdefault(int(row), len(self.of))

    def tiles(self) -> list[Tile]:
        if self.frames is None:
            return [Tile(row) for row in self.of]
        return [Tile(row, self.frames[row] // 2) for row in self.of]


def _protocol_entry(data, name: str, features, result: dict, metrics: dict, tiles: _Tiles, s: ReportSettings, metric):
    spec = data.protocols[name]
    index = data.index
    key, pid, camid = index.column("key").to_pylist(), index.column("pid").to_numpy(), index.column("camid").to_numpy()
    view = index.column("view").to_pylist()
    group = camid if spec.match == "camera" else np.asarray(view)
    per = result["per_query"]
    picked = pick_queries(per["ap"], worst=s.worst, sample=s.sample, seed=s.seed)
    q_rows = spec.query[per["query"][[p for _, p in picked]]] if picked else np.zeros(0, dtype=np.int64)
    top, dist = _top(features, q_rows, spec.gallery, metric, s.top_k) if len(q_rows) else ([], [])
    queries, ordinal = [], {"worst": 0, "random": 0}
    for (kind, p), q, positions, distances in zip(picked, q_rows, top, dist):
        ordinal[kind] += 1
        hits = []
        for rank, (g_pos, d) in enumerate(zip(positions, distances), 1):
            g = int(spec.gallery[g_pos])
            same = pid[g] == pid[q]
            cls = "junk" if same and group[g] == group[q] else "correct" if same else "wrong"
            hits.append({"rank": rank, "key": key[g], "pid": int(pid[g]), "camid": int(camid[g]), "view": view[g],
                         "distance": round(float(d), 4), "class": cls, "tile": tiles(g)})  # fmt: skip
        queries.append({"kind": kind, "ordinal": ordinal[kind], "key": key[q], "pid": int(pid[q]),
                        "camid": int(camid[q]), "view": view[q], "ap": round(float(per["ap"][p]), 4),
                        "first_match": int(per["first_match"][p]), "tile": tiles(q), "hits": hits})  # fmt: skip
    headline = {k: metrics[name][k] for k in ("mAP", "rank1", "mINP", "chance_mAP", "queries")}
    return {"name": name, "match": spec.match, "description": spec.description, "metrics": headline,
            "queries": queries}  # fmt: skip


def _cmc_figure(cmc_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name in dict.fromkeys(r["protocol"] for r in cmc_rows):
        rows = [r for r in cmc_rows if r["protocol"] == name]
        ax.plot([r["rank"] for r in rows], [r["cmc"] for r in rows], label=name)
    ax.set(xlabel="rank", ylabel="CMC", ylim=(0, 1.02), title="CMC per protocol")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same features, same bytes
    plt.close(fig)


def _embedding_figure(data, features: np.ndarray, test: np.ndarray, points: int, seed: int, path: Path) -> int:
    """t-SNE of (a seeded sample of) the test features; returns the number of points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(test, size=points, replace=False)) if len(test) > points else np.asarray(test)
    x = features[rows].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    perplexity = float(min(30, max(2, (len(rows) - 1) / 3)))
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
    pids = data.index.column("pid").to_numpy()[rows]
    views = np.asarray(data.index.column("view").to_pylist())[rows]
    is_query = np.zeros(len(data.index), dtype=bool)
    for spec in data.protocols.values():
        is_query[spec.query] = True
    query = is_query[rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), dpi=100)
    _, pid_code = np.unique(pids, return_inverse=True)
    colours = plt.get_cmap("tab20")(pid_code % 20)
    for marker, side in (("o", ~query), ("x", query)):
        axes[0].scatter(xy[side, 0], xy[side, 1], c=colours[side], s=10, marker=marker, linewidths=0.8)
    for k, v in enumerate(sorted(set(views.tolist()))):
        for marker, side in (("o", ~query), ("x", query)):
            here = side & (views == v)
            axes[1].scatter(xy[here, 0], xy[here, 1], color=plt.get_cmap("Set1")(k), s=10, marker=marker,
                            linewidths=0.8, label=v if marker == "o" else None)  # fmt: skip
    axes[0].set_title("by identity (20 colours, repeating); x: queries")
    axes[1].set_title("by view; x: queries")
    axes[1].legend(fontsize=8, markerscale=2)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of {len(rows)} test features")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same features, same bytes
    plt.close(fig)
    return len(rows)


def write_failure_report(
    out: Path,
    *,
    data,
    features: np.ndarray,
    test: np.ndarray,
    metrics: dict,
    cmc_rows: list[dict],
    ranked: dict[str, dict],
    metric: str = "cosine",
    settings: ReportSettings = ReportSettings(),
    reranked: bool = False,
) -> Path:
    """Write the failure report page into ``out`` (replacing an earlier report there, never
    anything else). ``features``: one row per index row; ``test``: the test rows;
    ``ranked``: per protocol the plain ranking's ``per_query`` result (computed here when absent)."""
    tiles, protocols = _Tiles(data), []
    for name in data.protocols:
        result = ranked.get(name) or evaluate_protocol(features, data, name, metric=metric, per_query=True)
        protocols.append(_protocol_entry(data, name, features, result, metrics, tiles, settings, metric))
    note = "Queries ranked by AP under the model's own distance."
    if reranked:
        note += " The metrics above each protocol are re-ranked; the lists and APs here are not."

    def build(folder: Path) -> None:
        warnings = render_sheets(data, tiles.tiles(), folder / "thumbs")
        _cmc_figure(cmc_rows, folder / "cmc.png")
        drawn = _embedding_figure(data, features, test, settings.points, settings.seed, folder / "embedding.png")
        page = {
            "grid": {"tile": list(TILE), "columns": SHEET_COLUMNS, "per_sheet": PER_SHEET, "folder": "thumbs"},
            "meta": {
                "method": metrics.get("method"),
                "dataset": data.manifest["source"],
                "version": data.version,
                "checkpoint": metrics.get("checkpoint"),
                "top_k": settings.top_k,
                "worst": settings.worst,
                "sample": settings.sample,
                "seed": settings.seed,
                "metric": metric,
                "note": note,
                "embedding_points": drawn,
                "warnings": warnings,
            },  # fmt: skip
            "figures": ["cmc.png", "embedding.png"],
            "protocols": protocols,
        }
        title = f"{metrics.get('method')} on {data.manifest['source']}: failure report"
        subtitle = f"dataset version {data.version}, checkpoint {str(metrics.get('checkpoint'))[:16]}"
        written_page(folder, title=title, subtitle=subtitle, app="failures", data=page)

    return write_page(Path(out), build)

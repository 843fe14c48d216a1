"""``reiddata stats``: what is in a converted dataset, from its index and manifest only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .manifest import load_index, load_manifest
from .storage import storage_for

__all__ = ["dataset_stats", "format_stats", "write_plots"]


def _sizes(widths: np.ndarray, heights: np.ndarray, pids: np.ndarray) -> dict:
    def summary(values: np.ndarray) -> dict:
        return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}

    return {
        "samples": int(len(widths)),
        "ids": len(set(pids.tolist())),
        "width": summary(widths),
        "height": summary(heights),
    }


def _value_counts(attrs: list, names: list[str]) -> dict[str, dict[str, int]]:
    chosen = [a for a in attrs if a is not None]
    return {name: dict(sorted(Counter(row[name] for row in chosen).items())) for name in names}


LENGTH_BINS = (1, 8, 16, 32, 64, 128)  # frames-per-tracklet histogram edges: 1-7, 8-15, ..., 128+


def _length_bin(n: int) -> str:
    lower = max(b for b in LENGTH_BINS if b <= n)
    upper = next((b for b in LENGTH_BINS if b > n), None)
    return f"{lower}-{upper - 1}" if upper else f"{lower}+"


def _tracklet_stats(rows: dict, split_order: list[str]) -> dict:
    """Tracklets, ids and frames per split and view; frames-per-tracklet distribution per split."""
    by: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for split, view, pid, n in zip(rows["split"], rows["view"], rows["pid"], rows["num_frames"]):
        by.setdefault((split, view), []).append((pid, n))
    table = [
        {"split": s, "view": v, "tracklets": len(m), "ids": len({p for p, _ in m}), "frames": sum(n for _, n in m)}
        for (s, v), m in sorted(by.items(), key=lambda kv: (split_order.index(kv[0][0]), kv[0][1]))
    ]
    lengths = {}
    for split in split_order:
        counts = np.asarray([n for s, n in zip(rows["split"], rows["num_frames"]) if s == split])
        bins = Counter(_length_bin(int(n)) for n in counts)
        lengths[split] = {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "mean": round(float(counts.mean()), 2),
            "max": int(counts.max()),
            "histogram": {_length_bin(b): bins.get(_length_bin(b), 0) for b in LENGTH_BINS},
        }
    return {"by_split_and_view": table, "frames_per_tracklet": lengths}


def dataset_stats(path: Path | str) -> dict:
    """Counts per split, view and protocol; image sizes by view; attributes and SIDs."""
    storage = storage_for(path)  # a folder or a URL
    manifest = load_manifest(storage)
    index = load_index(storage, manifest)
    wanted = ["split", "view", "width", "height", "pid", "num_frames", "frame_sizes", "attributes", "sid"]
    rows = index.select([c for c in wanted if c in index.column_names]).to_pydict()  # not the rest: time
    n = index.num_rows
    split = np.asarray(rows["split"])
    view = np.asarray(rows["view"])
    width, height = np.asarray(rows["width"]), np.asarray(rows["height"])
    pid = np.asarray(rows["pid"])
    video = manifest.get("kind") == "video"
    if video:  # crop sizes over every frame: UAV crops shrink and grow along a tracklet
        counts = np.asarray(rows["num_frames"])
        sizes = np.asarray([wh for fs in rows["frame_sizes"] for wh in fs]).reshape(-1, 2)
        width, height = sizes[:, 0], sizes[:, 1]
        view, pid = np.repeat(view, counts), np.repeat(pid, counts)
    out: dict = {
        "kind": manifest.get("kind", "image"),
        "source": manifest["source"],
        "variant": manifest["variant"],
        "version": manifest["version"],
        "samples": n,
        "splits": {
            name: {k: s[k] for k in ("samples", "ids", "cameras", "views", "frames")}
            for name, s in ((n, manifest["splits"][n]) for n in manifest["split_order"])
        },
        "sizes_by_view": {v: _sizes(width[view == v], height[view == v], pid[view == v]) for v in sorted(set(view))},
        "protocols": {p: manifest["protocols"][p] for p in manifest.get("protocol_order", manifest["protocols"])},
        "dropped": manifest["dropped"],
        "ignored": manifest["ignored"],
        "anomalies": manifest["anomalies"],
        "attributes": None,
        "attribute_status": manifest.get("attribute_status", "none"),
    }
    if video:
        out["tracklets"] = _tracklet_stats(rows, manifest["split_order"])
    if manifest["attributes"] is not None:
        out["attributes"] = _attribute_stats(manifest, rows, split, view)
    return out


def _attribute_stats(manifest: dict, rows: dict, split: np.ndarray, view: np.ndarray) -> dict:
    """Attribute values per split and per view, and per SID group the SIDs seen in train and test."""
    schema = manifest["attributes"]
    attrs, sids = rows["attributes"], rows["sid"]
    names = [a["name"] for a in schema["attributes"]]
    values = {s: _value_counts([a for a, sp in zip(attrs, split) if sp == s], names) for s in manifest["split_order"]}
    by_view = {v: _value_counts([a for a, vw in zip(attrs, view) if vw == v], names) for v in sorted(set(view))}
    groups = {}
    for g in schema["groups"]:
        seen = {"train": set(), "test": set()}
        for sid, sp in zip(sids, split):
            if sid is not None and sp in ("train", "query", "gallery"):
                seen["train" if sp == "train" else "test"].add(sid[g["name"]])
        groups[g["name"]] = {
            "num_sids": g["num_sids"],
            "train": len(seen["train"]),
            "test": len(seen["test"]),
            "test_unseen_in_train": sorted(seen["test"] - seen["train"]),
        }
    return {
        "values": values,
        "values_by_view": by_view,
        "sid_groups": groups,
        "without_attributes": sum(a is None for a in attrs),
    }


def headline_stats(stats: dict) -> dict:
    """The few numbers every dataset has, under the same keys (a DVC metrics file per
    source: `dvc metrics show` then gives one row per dataset): samples, identities and
    frames per split, cameras, protocols, attributes."""
    splits = stats["splits"]
    attributes = stats["attributes"]
    return {
        "samples": stats["samples"],
        "splits": {name: {k: s[k] for k in ("samples", "ids", "frames")} for name, s in splits.items()},
        "cameras": len({c for s in splits.values() for c in s["cameras"]}),
        "views": len({v for s in splits.values() for v in s["views"]}),
        "protocols": len(stats["protocols"]),
        "attributes": len(next(iter(attributes["values"].values()))) if attributes else 0,
    }


def _table(header: list[str], body: list[list[object]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in body]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _views(side: dict) -> str:
    return " ".join(f"{k}:{v}" for k, v in side.get("views", {}).items())


def format_stats(stats: dict) -> str:
    """A human-readable report of :func:`dataset_stats`: one table per section."""
    parts = [f"{stats['source']} ({stats['variant']})  version {stats['version']}  {stats['samples']} samples"]
    parts += [_splits_table(stats), _protocols_table(stats), *_tracklet_tables(stats), _sizes_table(stats)]
    for title in ("dropped", "ignored", "anomalies"):
        if stats[title]:
            parts.append(f"{title}:\n" + "\n".join(f"  {k}: {v}" for k, v in stats[title].items()))
    parts += _attribute_tables(stats)
    return "\n\n".join(parts) + "\n"


def _splits_table(stats: dict) -> str:
    body = [
        [
            name,
            s["samples"],
            s["ids"],
            ",".join(map(str, s["cameras"])),
            " ".join(f"{k}:{v}" for k, v in s["views"].items()),
        ]
        for name, s in stats["splits"].items()
    ]
    return _table(["split", "samples", "ids", "cameras", "views"], body)


def _protocols_table(stats: dict) -> str:
    header = ["protocol", "match", "queries", "query ids", "query views", "gallery", "gallery ids", "gallery views"]
    body = [
        [name, p["match"], p["query"]["samples"], p["query"]["ids"], _views(p["query"]), p["gallery"]["samples"],
         p["gallery"]["ids"], _views(p["gallery"])]
        for name, p in stats["protocols"].items()
    ]  # fmt: skip
    return _table(header, body)


def _tracklet_tables(stats: dict) -> list[str]:
    tracklets = stats.get("tracklets")
    if not tracklets:
        return []
    rows = [[r["split"], r["view"], r["tracklets"], r["ids"], r["frames"]] for r in tracklets["by_split_and_view"]]
    lengths = tracklets["frames_per_tracklet"]
    bins = list(next(iter(lengths.values()))["histogram"])
    per_split = [
        [s, x["min"], f"{x['median']:g}", x["mean"], x["max"], *x["histogram"].values()] for s, x in lengths.items()
    ]
    return [
        _table(["split", "view", "tracklets", "ids", "frames"], rows),
        "frames per tracklet:\n" + _table(["split", "min", "median", "mean", "max", *bins], per_split),
    ]


def _sizes_table(stats: dict) -> str:
    header = ["view", "frames" if stats.get("tracklets") else "images", "ids"]
    header += ["width min/median/max", "height min/median/max"]
    body = [
        [v, s["samples"], s.get("ids", "?"), "{min}/{median:g}/{max}".format(**s["width"]),
         "{min}/{median:g}/{max}".format(**s["height"])]
        for v, s in stats["sizes_by_view"].items()
    ]  # fmt: skip
    return _table(header, body)


def _attribute_tables(stats: dict) -> list[str]:
    attributes = stats["attributes"]
    if attributes is None:
        return [f"attributes: {stats['attribute_status']}"]
    columns = {**attributes["values"], **attributes.get("values_by_view", {})}
    body = []
    for name in attributes["values"][next(iter(attributes["values"]))]:
        keys = sorted({k for c in columns.values() for k in c[name]})
        for k in keys:
            body.append([name, k, *(c[name].get(k, 0) for c in columns.values())])
    groups = [
        [g, s["num_sids"], s["train"], s["test"], len(s["test_unseen_in_train"])]
        for g, s in attributes["sid_groups"].items()
    ]
    out = [
        "attribute values (samples per split and per view):\n" + _table(["attribute", "value", *columns], body),
        "semantic IDs per group:\n" + _table(["group", "possible", "in train", "in test", "test-only"], groups),
    ]
    if attributes["without_attributes"]:
        out.append(f"samples without attributes (distractors): {attributes['without_attributes']}")
    return out


def write_plots(stats: dict, directory: Path) -> list[Path]:
    """PNG plots: samples per split and view, image heights by view, attribute values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    splits = list(stats["splits"])
    views = sorted({v for s in stats["splits"].values() for v in s["views"]})
    bottom = np.zeros(len(splits))
    for v in views:
        counts = np.array([stats["splits"][s]["views"].get(v, 0) for s in splits])
        ax.bar(splits, counts, bottom=bottom, label=v)
        bottom += counts
    ax.set_ylabel("samples")
    ax.set_title(f"{stats['source']}: samples per split and view")
    ax.legend()
    written.append(_save(fig, directory / "splits.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(stats["sizes_by_view"])
    med = [stats["sizes_by_view"][v]["height"]["median"] for v in names]
    lo = [m - stats["sizes_by_view"][v]["height"]["min"] for v, m in zip(names, med)]
    hi = [stats["sizes_by_view"][v]["height"]["max"] - m for v, m in zip(names, med)]
    ax.bar(names, med, yerr=[lo, hi], capsize=6)
    ax.set_ylabel("crop height (px): median, min-max")
    ax.set_title("image size by view")
    written.append(_save(fig, directory / "sizes.png"))

    attributes = stats["attributes"]
    if attributes is not None:
        train = attributes["values"].get("train", {})
        fig, axes = plt.subplots(int(np.ceil(len(train) / 4)), 4, figsize=(14, 2.6 * np.ceil(len(train) / 4)))
        for ax, (name, counts) in zip(np.ravel(axes), train.items()):
            ax.bar(list(counts), list(counts.values()))
            ax.set_title(name, fontsize=9)
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        for ax in np.ravel(axes)[len(train) :]:
            ax.axis("off")
        fig.suptitle("train attribute values (samples)")
        written.append(_save(fig, directory / "attributes.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path

"""The model card beside every checkpoint: ``MODEL.md`` for people, ``model.json`` for programs.

``train`` writes it when a run ends; ``evaluate`` adds the metrics per protocol of the
dataset it scored (one entry per dataset version, so a cross-domain evaluation adds to
the card rather than replacing it). A card not written by reidmodels is never touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["DEVIATIONS", "read_card", "write_model_card"]

MARKER = "reidmodels model card"

# What our implementation does differently from the official code, per method (README, "Fidelity").
DEVIATIONS: dict[str, tuple[str, ...]] = {
    "clip-reid": (
        "SIE (options sie_camera) adds the camera embedding to the class token, as the official code does "
        "(a reading of the paper puts it on the patch tokens).",
    ),
    "cerberus": (
        "No official code: reid-strong-baseline's random erasing; an epoch is one pass of the official image "
        "sampler (the paper's 24k iterations in 120 epochs on Market-1501).",
    ),
    "latex": ("LATex-full (options full: true) also trains the image encoder, at backbone_lr.",),
    "vsla-clip": (
        "Holds the 25,296,896-parameter token table and the logit scale beside the official 139,997,184 "
        "(official_parameter_count()).",
    ),
    "promptsg": ("Attention weights kept in float32 where the official code may cast to float16 (precision only).",),
    "ft-clip": ("ViFi-CLIP weights only with options vifi: PATH; otherwise both encoders start from CLIP.",),
    "clip-video": ("A temporal average of CLIP image features: a baseline, not a paper's method.",),
}


def read_card(folder: Path) -> dict | None:
    """``model.json`` of a run folder when reidmodels wrote it, else None."""
    path = Path(folder) / "model.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and card.get("written_by") == MARKER else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _markdown(card: dict) -> str:
    facts, recipe = card["facts"], card["recipe"]
    lines = [
        f"# {card['method']} trained on {card['trained_on']['names']}",
        "",
        f"- checkpoint: `checkpoint.pt` (sha256 {card['checkpoint_sha256']}...)",
        f"- dataset: {', '.join(f'{n} (version {v})' for n, v in card['trained_on']['versions'].items())}",
        f"- backbone: {card['backbone']} (pretrained: {card['pretrained'] or 'none, random init'})",
        f"- input: {recipe['image_size'][0]}x{recipe['image_size'][1]} crops, transforms `{recipe.get('transforms')}`"
        + (f", clips of {recipe['clip_length']} frames ({recipe['clip_mode']})" if facts["kind"] == "video" else ""),
        f"- feature: {card['feature_size']} floats, L2-normalised; rank by cosine similarity",
        f"- parameters: {card['parameters']['total']:,} ({card['parameters']['trainable']:,} trainable)"
        + (f"; official count {card['parameters']['official']:,}" if card["parameters"].get("official") else ""),
        f"- train identities: {facts['num_classes']}, images or tracklets: {facts['train_samples']}",
        "",
        "## Deviations from the official code",
        "",
        *[f"- {d}" for d in card["deviations"] or ["none known"]],
        "",
        "## Metrics",
        "",
    ]
    if not card["metrics"]:
        lines.append("Not evaluated yet: `reidmodels evaluate --checkpoint THIS_FOLDER --data DATASET`.")
    else:
        lines += [
            "| dataset | version | protocol | Rank-1 | mAP | mINP | chance mAP |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for entry in card["metrics"].values():
            for protocol, m in entry["protocols"].items():
                lines.append(
                    f"| {entry['dataset']} | {entry['version']} | {protocol} | {m['rank1']:.3f} | {m['mAP']:.3f} | "
                    f"{m['mINP']:.3f} | {m['chance_mAP']:.3f} |"
                )
    lines += [
        "",
        "## Use it",
        "",
        "```python",
        "import reidmodels",
        "",
        'model = reidmodels.load("THIS_FOLDER")  # device="auto": CUDA when present',
        'features = model.embed(["a.jpg", "b.jpg"])  # (2, feature_size), as `evaluate` computes them',
        "```",
        "",
        "`reidmodels extract THIS_FOLDER CROPS features.parquet` embeds a folder; "
        "`reidmodels export THIS_FOLDER model.onnx` writes the feature graph.",
        "",
        f"Recipe (`{card['method']}` with this run's overrides):",
        "",
        "```json",
        json.dumps(recipe, indent=2, sort_keys=True),
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, *, info: dict, model, metrics: dict | None = None) -> Path | None:
    """Write (or update with ``metrics``, an ``evaluate`` result) the card of the run in ``folder``.

    ``info``: the checkpoint's method, recipe, config, facts and sha256. Returns the
    ``model.json`` path, or None when a card there was not written by reidmodels."""
    folder = Path(folder)
    card = read_card(folder)
    if card is None and ((folder / "model.json").exists() or (folder / "MODEL.md").exists()):
        return None  # not ours (no model.json of reidmodels beside it): never overwritten
    data = info["config"]["data"]
    names = [data] if isinstance(data, str) else list(data)
    if card is None or card.get("checkpoint_sha256") != info["sha256"]:
        official = getattr(model, "official_parameter_count", None)
        card = {
            "written_by": MARKER,
            "method": info["method"],
            "checkpoint_sha256": info["sha256"],
            "backbone": info["config"].get("backbone"),
            "pretrained": info["config"].get("pretrained"),
            "options": info["config"].get("options", {}),
            "recipe": info["recipe"],
            "facts": {
                k: info["facts"][k] for k in ("kind", "num_classes", "train_samples", "cameras") if k in info["facts"]
            },
            "trained_on": {"names": " + ".join(Path(n).name for n in names), "versions": {}, "locations": names},
            "feature_size": int(model.embed_dim),
            "parameters": {
                "total": sum(p.numel() for p in model.parameters()),
                "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "official": official() if callable(official) else None,
            },
            "deviations": list(DEVIATIONS.get(info["method"], ())),
            "metrics": {},
        }
        if "versions" in info:
            card["trained_on"]["versions"] = info["versions"]
    if metrics is not None:
        protocols = {k: {h: v[h] for h in ("rank1", "mAP", "mINP", "chance_mAP")} for k, v in metrics.items()
                     if isinstance(v, dict) and "mAP" in v}  # fmt: skip
        key = f"{metrics['dataset']}@{metrics['version']}"
        card["metrics"][key] = {"dataset": metrics["dataset"], "version": metrics["version"], "protocols": protocols}
    _atomic_write(folder / "model.json", json.dumps(card, indent=2, sort_keys=True) + "\n")
    _atomic_write(folder / "MODEL.md", _markdown(card))
    return folder / "model.json"

"""What a method needs to know of a converted dataset, and the one way to open a dataset for a method."""

from __future__ import annotations

import numpy as np

__all__ = ["dataset_facts", "open_for"]


def dataset_facts(data) -> dict:
    """What a method needs from a converted dataset: train identities and images,
    attribute values, SID groups and, per SID, how many training persons have it."""
    schema = data.manifest.get("attributes")
    train = data.manifest["splits"]["train"]
    facts = {
        "kind": data.kind,
        "num_classes": int(train["ids"]),
        "train_samples": int(train["samples"]),
        "attribute_classes": [len(a["values"]) for a in schema["attributes"]] if schema else None,
        "attribute_names": [a["name"] for a in schema["attributes"]] if schema else [],
        "attribute_values": [a["values"] for a in schema["attributes"]] if schema else [],
        "groups": schema["groups"] if schema else [],
        # the cameras of the labelled splits (distractors' -1 left out): CLIP-ReID's SIE sizes by them
        "cameras": sorted({c for s in data.manifest["splits"].values() for c in s["cameras"] if c >= 0}),
    }
    if schema:
        rows = [r for r in data.index.select(["split", "pid", "sid"]).to_pylist() if r["split"] == "train" and r["sid"]]
        persons = {r["pid"]: r["sid"] for r in rows}
        facts["persons"] = len(persons)
        facts["sid_counts"] = {
            g["name"]: np.bincount([s[g["name"]] for s in persons.values()], minlength=g["num_sids"]).tolist()
            for g in schema["groups"]
        }
    return facts


def open_for(method, data) -> tuple:
    """``(dataset, facts)`` of ``data`` (a location, several, or an opened dataset) for
    ``method`` (its class), or an error when the dataset's kind is not the one it trains on."""
    from reiddata import ReidDataset, open_dataset
    from reiddata.combine import CombinedDataset

    opened = data if isinstance(data, (ReidDataset, CombinedDataset)) else open_dataset(data)
    facts = dataset_facts(opened)
    if facts["kind"] != method.kind:
        where = getattr(opened, "path", data)
        raise ValueError(f"method {method.name} trains on {method.kind} datasets; {where} holds {facts['kind']}")
    return opened, facts

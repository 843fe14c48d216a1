"""LATex: the model from a converted dataset, its parameter count, tiny training and evaluation."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import cpu_train_config

from reidmodels import build_model
from reidmodels.backbone import TINY
from reidmodels.engine import EvalConfig, TrainConfig, evaluate, train

QUT_CLASSES = [3, 4, 5, 4, 5, 7, 6, 3, 3, 4, 5, 13, 10, 7, 9]  # the 15 attributes, 88 values


def _trainable(model) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, p in model.trainable_parameters():
        key = name.split(".")[0] if not name.startswith("backbone.") else "clip_visual"
        out[key] = out.get(key, 0) + p.numel()
    return out


def test_latex_from_a_converted_dataset(converted):
    model = build_model("latex", dataset=converted("agreid-v2"), backbone=TINY, prompts=16, shared_tokens=16)
    assert model.attribute_classes == QUT_CLASSES and len(model.pacg) == 15
    assert model.classifier_v.out_features == 6  # the synthetic train identities
    x, views = torch.randn(3, 3, 256, 128), torch.tensor([0, 1, 2])  # aerial, ground, wearable
    out = model.outputs(x, views)
    assert [lg.shape[1] for lg in out["attribute_logits"]] == QUT_CLASSES
    assert out["bn"].shape == (3, 2 * 64)  # [image ; text]
    # the view word changes the text side only
    other = model.eval().outputs(x, torch.tensor([1, 1, 1]))
    assert torch.allclose(other["feature_v"], model.outputs(x, views)["feature_v"])
    assert not torch.allclose(other["feature_t"][0], model.outputs(x, views)["feature_t"][0])
    cargo = build_model("latex", dataset=converted("cargo"), backbone=TINY, prompts=16)
    assert cargo.attribute_classes == [] and "attribute_logits" not in cargo.eval().outputs(x, views)


def test_trainable_parameters_with_vit_b16_beside_the_papers_35_97m(converted):
    """Built without weights. The paper reports 35.97M trainable parameters for AG-ReID.v1."""
    model = build_model("latex", dataset=converted("agreid-v1"), backbone="ViT-B-16", prompts=15, shared_tokens=8)
    counts = _trainable(model)
    assert counts["prompts"] == 12 * 15 * 768  # deep prompts in every block
    assert counts["shared"] == 8 * 512
    assert counts["to_text"] == 15 * (1024 * 512 + 512 + 512 * 512 + 512)  # the 15 MLPs
    per_attribute = (1024 * 512 + 512) + (4 * 512 * 512 + 4 * 512) + 2 * 512 + 2 * (512 * 512 + 512) + 2 * 512
    heads = sum(512 * c + c for c in QUT_CLASSES)
    assert counts["pacg"] == 15 * per_attribute + heads
    # the residual FFN (2 x 512x512 per attribute) and its LayerNorm are what the official
    # code leaves out: without them the total is the paper's order of magnitude
    ffn = 15 * (2 * (512 * 512 + 512) + 2 * 512)
    total = sum(counts.values())
    assert 35.5e6 < total - ffn < 36.5e6
    assert "clip_visual" not in counts
    model = build_model("latex", dataset=converted("agreid-v1"), backbone="ViT-B-16", prompts=15, full=True)
    full = _trainable(model)
    assert full["clip_visual"] > 80e6  # LATex-full: the image encoder too


def _config(data, out, epochs: int = 6, **kw) -> TrainConfig:
    stage = {"epochs": epochs, "lr": 1e-3, "warmup_epochs": 1, "weight_decay": 0.0}
    hparams = {"p": 3, "k": 2, "pad": 4, "stages": {"train": stage}}
    options = {"prompts": 16, "shared_tokens": 8}
    return cpu_train_config(data, out, method="latex", hparams=hparams, options=options, max_steps_per_epoch=2, **kw)


def test_tiny_latex_trains_and_evaluates_per_protocol_with_attribute_accuracy(converted, tmp_path):
    data = converted("agreid-v2")
    train(_config(data, tmp_path / "run"))
    with open(tmp_path / "run" / "train_log.csv") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(loss) == 6 and loss[-1] < loss[0]
    metrics = evaluate(
        EvalConfig(
            data=str(data), checkpoint=str(tmp_path / "run"), out=str(tmp_path / "eval"), workers=0, device="cpu"
        )
    )
    assert {"a2c", "a2w", "c2a", "w2a"} <= set(metrics)
    for name in ("a2c", "a2w", "c2a", "w2a"):
        assert 0 < metrics[name]["mAP"] <= 1 and metrics[name]["mINP"] > 0
    accuracy = metrics["attribute_accuracy"]
    assert len(accuracy) == 15 and all(0 <= v <= 1 for v in accuracy.values())


def test_tiny_latex_on_cargo_has_no_attribute_heads_and_matches_a2g_by_view(converted, tmp_path):
    data = converted("cargo")
    train(_config(data, tmp_path / "run", epochs=1))
    metrics = evaluate(
        EvalConfig(
            data=str(data), checkpoint=str(tmp_path / "run"), out=str(tmp_path / "eval"), workers=0, device="cpu"
        )
    )
    assert metrics["a2g"]["match"] == "view" and "attribute_accuracy" not in metrics


def test_wrong_model_for_the_data_is_refused(converted, tmp_path):
    with pytest.raises(ValueError, match="method latex trains on image datasets"):
        train(_config(converted("g2a-vreid"), tmp_path / "run"))

"""LATex: the model from a converted dataset, its parameter count, tiny training and evaluation."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import cpu_train_config

from reiddata import open_dataset
from reidmodels import build_model
from reidmodels.backbone import TINY
from reidmodels.engine import EvalConfig, TrainConfig, evaluate, train
from reidmodels.methods import dataset_facts
from reidmodels.methods.latex import AttributeClassifier, LATex

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
    out = model.eval().outputs(x, views)
    assert [lg.shape[1] for lg in out["attribute_logits"]] == QUT_CLASSES
    assert out["test"].shape == (3, 2 * 64)  # [BN_v(image) ; text]
    # the view word changes the text side only
    other = model.outputs(x, torch.tensor([1, 1, 1]))["test"]
    assert torch.allclose(other[:, :64], out["test"][:, :64])
    assert not torch.allclose(other[0, 64:], out["test"][0, 64:])
    cargo = build_model("latex", dataset=converted("cargo"), backbone=TINY, prompts=16)
    assert cargo.attribute_classes == [] and "attribute_logits" not in cargo.eval().outputs(x, views)


def test_the_official_pacg_attends_across_the_batch():
    """The code's non-batch-first attention mixes samples: one sample's logits change with another's image."""
    classifier = AttributeClassifier(8, 3, heads=2).eval()
    pair, others, g = torch.randn(4, 16), torch.randn(4, 14, 8), torch.randn(4, 8)
    changed = g.clone()
    changed[3] += 1.0
    assert not torch.allclose(classifier(pair, others, g)[0], classifier(pair, others, changed)[0])


def test_trainable_parameters_with_vit_b16_beside_the_papers_35_97m(converted):
    """Built without weights at AG-ReID.v1's 199 train identities."""
    facts = {**dataset_facts(open_dataset(converted("agreid-v1"))), "num_classes": 199}
    model = LATex.build(facts, backbone="ViT-B-16", pretrained=None, image_size=(256, 128), prompts=15)
    counts = _trainable(model)
    assert counts["prompts"] + counts["attribute_prompts"] == 12 * 15 * 768  # 11 layers of 15 + the 15 of layer 12
    assert counts["shared"] == 8 * 512
    assert counts["to_text"] == 15 * (1024 * 512 + 512 + 512 * 512 + 512)  # the 15 MLPs
    per_attribute = (1024 * 512 + 512) + (3 * 512 * 512 + 3 * 512) + (512 * 512 + 512) + 15 + 2 * 512
    assert counts["pacg"] == 15 * per_attribute + sum(512 * c + c for c in QUT_CLASSES)
    total = sum(counts.values())
    assert total == 35_852_089  # the official 35,867,449 less its unused MLP BatchNorms (15 x 1,024)
    assert abs(total - 35.97e6) / 35.97e6 < 0.005
    assert "clip_visual" not in counts
    paper = LATex.build(facts, backbone="ViT-B-16", pretrained=None, image_size=(256, 128), reading="paper")
    assert 43.7e6 < sum(_trainable(paper).values()) < 43.8e6  # + the residual FFN the code leaves out
    full = LATex.build(facts, backbone="ViT-B-16", pretrained=None, image_size=(256, 128), full=True)
    assert _trainable(full)["clip_visual"] > 80e6  # LATex-full: the image encoder too


def _config(data, out, epochs: int = 8, **kw) -> TrainConfig:
    stage = {"epochs": epochs, "lr": 1e-3, "warmup_epochs": 1, "weight_decay": 0.0}
    hparams = {"p": 3, "k": 2, "pad": 4, "stages": {"train": stage}}
    options = {"prompts": 16, "shared_tokens": 8}
    return cpu_train_config(data, out, method="latex", hparams=hparams, options=options, max_steps_per_epoch=3, **kw)


def test_tiny_latex_trains_and_evaluates_per_protocol_with_attribute_accuracy(converted, tmp_path):
    data = converted("agreid-v2")
    train(_config(data, tmp_path / "run"))
    with open(tmp_path / "run" / "train_log.csv") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(loss) == 8 and loss[-1] < loss[0]
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

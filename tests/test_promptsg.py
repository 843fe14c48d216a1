"""PromptSG: parameter arithmetic, the pseudo token, gradients through the frozen text encoder, tiny training."""

from __future__ import annotations

import csv

import torch
from conftest import cpu_train_config

from reidmodels.backbone import build_clip
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.methods.promptsg import PromptSG


def test_trainable_parameters_with_vit_b16_match_the_papers_94m():
    model = PromptSG.build({"num_classes": 751}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128))
    trained = dict(model.trainable_parameters())
    part = lambda *prefixes: sum(p.numel() for n, p in trained.items() if n.startswith(prefixes))  # noqa: E731
    assert part("backbone.clip.visual.") == 86_140_416
    assert (part("inversion."), part("cross."), part("blocks.")) == (788_992, 1_050_624, 6_304_768)
    assert part("ln_query.", "ln_tokens.", "ln_final.") == 3_072
    assert sum(p.numel() for p in trained.values()) - part("bottleneck.", "classifier.") == 94_287_872
    assert not any(n.startswith("backbone.clip.transformer.") for n in trained)  # the text encoder is frozen


def test_the_pseudo_token_replaces_the_placeholder_and_gradients_reach_the_image_encoder():
    torch.manual_seed(0)
    model = PromptSG(build_clip("reid-tiny"), 4)
    for name, p in model.named_parameters():
        p.requires_grad_(model.trains(name, "train"))
    x = torch.randn(2, 3, 256, 128)
    v = model.backbone.image_features(x)["proj"]
    composed = model.composed_text(v)
    other = model.composed_text(model.backbone.image_features(x.flip(-1) + 1)["proj"])
    assert not torch.allclose(composed, other)  # another image, another pseudo word, another text feature
    assert torch.equal(model.simplified_text(2)[0], model.simplified_text(2)[1])  # the simplified prompt ignores images
    model.zero_grad()
    composed.sum().backward()
    assert model.inversion[0].weight.grad.abs().sum() > 0
    assert model.backbone.visual.conv1.weight.grad.abs().sum() > 0  # through the frozen text encoder
    assert model.backbone.clip.token_embedding.weight.grad is None


def test_both_interaction_readings_and_inference_modes_give_unit_features():
    for interaction in ("query", "reweight"):
        model = PromptSG(build_clip("reid-tiny"), 4, interaction=interaction).eval()
        x = torch.randn(3, 3, 256, 128)
        with torch.no_grad():
            composed, simplified = model.test_outputs(x)
        assert composed.shape == simplified.shape == (3, 64)
        assert torch.allclose(composed.norm(dim=1), torch.ones(3), atol=1e-5)
        assert not torch.allclose(composed, simplified)


def test_tiny_promptsg_lowers_its_loss_and_evaluates_both_modes(converted, tmp_path):
    data = converted("market1501")
    hparams = {"p": 3, "k": 2, "random_erasing": 0.0, "stages": {"train": {"epochs": 6, "lr": 1e-3}}}
    hparams["extra"] = {"new_lr": 1e-3}
    hparams["supcon_weight"] = 0.5
    config = cpu_train_config(data, tmp_path / "run", method="promptsg", hparams=hparams, max_steps_per_epoch=3)
    train(config)
    with open(tmp_path / "run" / "train_log.csv") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(loss) == 6 and loss[-1] < loss[0]
    run, out = str(tmp_path / "run"), str(tmp_path / "eval")
    metrics = evaluate(EvalConfig(data=str(data), checkpoint=run, out=out, workers=0, device="cpu"))
    assert 0 < metrics["standard"]["mAP"] <= 1 and 0 < metrics["simplified"]["standard"]["mAP"] <= 1

"""VSLA-CLIP: adapter and prompt arithmetic with ViT-B-16, CFAA across frames, the plain encoder under zero adapters."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import cpu_train_config

from reidmodels.backbone import build_clip
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.methods.ft_clip import FTCLIP
from reidmodels.methods.vsla_clip import VSLACLIP, CrossFrameAdapter


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_arithmetic_with_vit_b16_at_g2a_identities():
    model = VSLACLIP.build({"num_classes": 930}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128), pbp=True)
    ifa, cfaa = _count(model.ifa_adapters), _count(model.cfaa_adapters)
    assert (ifa, cfaa) == (12 * 394_240, 12 * 657_408) == (4_730_880, 7_888_896)
    assert _count(model.prompt_learner) == 2048 * 930 + 8192
    assert ifa + cfaa + _count(model.prompt_learner) == 12_619_776 + 2048 * 930 + 8192 == 14_532_608
    assert model.pbp_prompts.numel() == 2 * 3 * 16 * 768
    adapters = [n for n, _ in model.trainable_parameters("stage2") if "adapter" in n]
    assert len(adapters) == 12 * (4 + 8)  # IFA: 2 linears; CFAA: 2 linears + attention (in and out, weight and bias)
    assert model.embed_dim == 1280


def test_cfaa_is_blind_to_frame_order_and_mixes_the_frames():
    torch.manual_seed(0)
    adapter = CrossFrameAdapter(16, 8, heads=2)
    b, t, length = 2, 4, 5
    x = torch.randn(b * t, length, 16)
    out = adapter(x, t).view(b, t, length, 16)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = adapter(x.view(b, t, length, 16)[:, order].reshape(b * t, length, 16), t).view(b, t, length, 16)
    assert torch.allclose(shuffled, out[:, order], atol=1e-6)  # same outputs, in the new order
    changed = x.clone().view(b, t, length, 16)
    changed[0, 2] += 1.0  # one frame of the first tracklet
    moved = adapter(changed.view(b * t, length, 16), t).view(b, t, length, 16)
    assert all(not torch.allclose(moved[0, f], out[0, f]) for f in range(t))  # every frame's output changes
    assert torch.allclose(moved[1], out[1], atol=1e-6)  # the other tracklet does not


def test_zero_adapters_give_the_plain_backbone_frame_by_frame():
    model = VSLACLIP(build_clip("reid-tiny"), 5).eval()
    for adapter in list(model.ifa_adapters) + list(model.cfaa_adapters):
        torch.nn.init.zeros_(adapter.up.weight)
        torch.nn.init.zeros_(adapter.up.bias)
    clips = torch.randn(2, 3, 3, 256, 128)
    with torch.no_grad():
        adapted = model.encode(clips)
        plain = model.backbone.image_features(clips.flatten(0, 1))
    for name in ("penultimate", "cls", "proj"):
        assert torch.allclose(adapted[name], plain[name].view(2, 3, -1).mean(1), atol=1e-5)


def test_platform_prompts_follow_the_view():
    model = VSLACLIP(build_clip("reid-tiny"), 5, pbp=True, pbp_depth=2, pbp_length=4).eval()
    clips = torch.randn(2, 2, 3, 256, 128)
    with torch.no_grad():
        aerial, ground = model.embed(clips, view=torch.tensor([0, 0])), model.embed(clips, view=torch.tensor([1, 1]))
        wearable = model.embed(clips, view=torch.tensor([2, 2]))
    assert not torch.allclose(aerial, ground) and torch.allclose(ground, wearable)  # ground and body cams: one platform


def test_ft_clip_trains_the_whole_image_encoder_and_no_adapters():
    model = FTCLIP.build({"num_classes": 930}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128))
    stage2 = sum(p.numel() for _, p in model.trainable_parameters("stage2"))
    assert stage2 == 86_140_416 + 1280 * 930 + 1280  # CLIP-ReID's stage 2 on frame means
    assert _count(model.prompt_learner) == 2048 * 930 + 8192  # 16 shared + 4 per identity
    assert not any("adapter" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("pbp", [False, True])
def test_tiny_vsla_clip_lowers_its_loss_and_evaluates_both_protocols(converted, tmp_path, pbp):
    data = converted("g2a-vreid", "v2")
    stages = {"stage1": {"epochs": 1}, "stage2": {"epochs": 6, "lr": 1e-3, "warmup_epochs": 0}}
    hparams = {"p": 3, "k": 2, "clip_length": 2, "random_erasing": 0.0, "stages": stages}
    options = {"pbp": pbp, "pbp_depth": 1, "pbp_length": 2}
    config = cpu_train_config(data, tmp_path / "run", method="vsla-clip", hparams=hparams, options=options)
    config.max_steps_per_epoch = 3
    train(config)
    with open(tmp_path / "run" / "train_log.csv") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f) if r["stage"] == "stage2"]
    assert len(loss) == 6 and loss[-1] < loss[0]
    run, out = str(tmp_path / "run"), str(tmp_path / "eval")
    metrics = evaluate(EvalConfig(data=str(data), checkpoint=run, out=out, workers=0, device="cpu"))
    assert {"g2a", "a2g"} <= set(metrics) and all(0 < metrics[p]["mAP"] <= 1 for p in ("g2a", "a2g"))

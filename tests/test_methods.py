"""The methods registry: every method trains, checkpoints, resumes and evaluates through one engine;
parameter arithmetic and official hyper-parameters pinned against ../shared/METHODS.md."""

from __future__ import annotations

import importlib
import inspect
import math

import pytest
import torch
from conftest import cpu_train_config

from reidmodels import METHODS, build_model
from reidmodels.backbone import build_clip
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.methods import get_method
from reidmodels.methods.base import HALF, IMAGENET_MEAN
from reidmodels.methods.clip_reid import CLIPReID
from reidmodels.methods.solver import lr_factor

DATASET = {
    "clip-reid": "market1501",
    "clip-video": "g2a-vreid",
    "latex": "agreid-v2",
    "cerberus": "market1501",
    "vsla-clip": "g2a-vreid",
    "ft-clip": "g2a-vreid",
    "promptsg": "market1501",
}
SMALL = {
    "cerberus": {"image_size": [128, 64]},
    "clip-video": {"clip_length": 2},
    "vsla-clip": {"clip_length": 2},
    "ft-clip": {"clip_length": 2},
}


def test_the_registry_names_every_method_and_lists_them_on_a_typo():
    assert list(METHODS) == ["clip-reid", "clip-video", "latex", "cerberus", "vsla-clip", "ft-clip", "promptsg"]
    with pytest.raises(ValueError, match="unknown method 'clipreid': expected one of clip-reid, clip-video, latex"):
        get_method("clipreid")


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_checkpoints_resumes_and_evaluates(name, converted, tmp_path):
    data = converted(DATASET[name])
    model = build_model(name, dataset=data, backbone="reid-tiny", **({"prompts": 16} if name == "latex" else {}))
    x = torch.randn(2, 3, 128, 64) if name == "cerberus" else torch.randn(2, 3, 256, 128)
    if get_method(name).kind == "video":
        x = torch.randn(2, 3, 3, 256, 128)
    with torch.no_grad():
        feature = model.eval().embed(x, view=torch.tensor([0, 1]))
    assert feature.shape == (2, model.embed_dim)
    assert torch.allclose(feature.norm(dim=1), torch.ones(2), atol=1e-5)
    assert set(dict(model.trainable_parameters())) == {
        n for s in model.stages for n, _ in model.trainable_parameters(s)
    }

    # feature stages in batches of 8: VSLA-CLIP's floor(N / 64) would give none on this tiny set
    small = {"feature_batch": 8}
    stages = {s: {"epochs": 1, **(small if model.recipe.stages[s].batches == "features" else {})} for s in model.stages}
    options = {"prompts": 16} if name == "latex" else {}
    config = cpu_train_config(
        data,
        tmp_path / "run",
        method=name,
        hparams={"p": 2, "k": 2, "stages": stages, **SMALL.get(name, {})},
        options=options,
        max_steps_per_epoch=1,
    )
    assert train(config)["batches"] == len(model.stages)
    last = model.stages[-1]
    stages[last] = {"epochs": 2}
    config.hparams["stages"] = stages
    assert train(config)["batches"] == 1  # resumed: only the new epoch of the last stage
    metrics = evaluate(
        EvalConfig(
            data=str(data), checkpoint=str(tmp_path / "run"), out=str(tmp_path / "eval"), workers=0, device="cpu"
        )
    )
    protocols = [k for k, v in metrics.items() if isinstance(v, dict) and "mAP" in v]
    assert protocols and all(0 <= metrics[p]["mAP"] <= 1 for p in protocols)
    assert metrics["method"] == name


GENERIC_MODULES = (
    "engine",
    "engine.config",
    "engine.data",
    "engine.hooks",
    "engine.trainer",
    "factory",
    "inputs",
    "checkpoint",
    "runtime",
    "evaluation.ranking",
    "evaluation.rerank",
    "evaluation.features",
    "evaluation.run",
)


@pytest.mark.parametrize("module", GENERIC_MODULES)
def test_the_engine_knows_no_method_by_name(module):
    source = inspect.getsource(importlib.import_module(f"reidmodels.{module}"))
    for name, cls in METHODS.items():
        assert name not in source and cls.__name__ not in source
    assert "isinstance(model" not in source


def test_clip_reid_with_vit_b16_parameter_arithmetic_and_quickgelu():
    """Built without weights at 751 identities (Market-1501): 86.14M + 3,328 N + 1,280."""
    model = CLIPReID.build({"num_classes": 751}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128))
    count = lambda stage: sum(p.numel() for _, p in model.trainable_parameters(stage))  # noqa: E731
    assert count("stage1") == 2048 * 751  # 4 tokens x 512 per identity
    assert count("stage2") == 86_140_416 + 1280 * 751 + 1280  # image encoder, classifiers, BN weights
    assert count(None) == 88_641_024
    assert model.embed_dim == 1280
    from open_clip.transformer import QuickGELU

    blocks = list(model.backbone.visual.transformer.resblocks) + list(model.backbone.clip.transformer.resblocks)
    assert len(blocks) == 24 and all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)


def test_the_layer_11_class_token_is_the_penultimate_block_output():
    clip = build_clip("reid-tiny")
    x = torch.randn(2, 3, 256, 128)
    f = clip.image_features(x)
    tokens = clip.visual._embeds(x)
    assert torch.equal(clip.embed_patches(x), tokens)  # our copy of open_clip's private step, exactly
    first = clip.visual.transformer.resblocks[0](tokens)  # 2 blocks: the penultimate is the first
    assert torch.allclose(f["penultimate"], first[:, 0], atol=1e-5)
    assert torch.allclose(f["proj"], clip.encode_image(x)[0], atol=1e-5)


def test_official_hyper_parameters_are_pinned():
    """Against ../shared/METHODS.md: a silent drift of any of these fails."""
    r = METHODS["clip-reid"].recipe
    s1, s2 = r.stages["stage1"], r.stages["stage2"]
    assert (s1.optimizer, s1.lr, s1.weight_decay, s1.epochs, s1.schedule) == ("adam", 3.5e-4, 1e-4, 120, "cosine")
    assert (s1.warmup_epochs, s1.warmup_from * s1.lr, s1.min_lr) == (5, pytest.approx(1e-5), 1e-6)
    assert (s1.batches, s1.feature_batch) == ("features", 64)
    assert (s2.optimizer, s2.lr, s2.weight_decay, s2.bias_lr_factor, s2.epochs) == ("adam", 5e-6, 1e-4, 2.0, 60)
    assert (s2.schedule, s2.warmup_epochs, s2.warmup_from, s2.milestones, s2.gamma) == (
        "multistep",
        10,
        0.1,
        (30, 50),
        0.1,
    )
    assert (r.p, r.k, r.image_size, r.flip, r.pad, r.random_erasing) == (16, 4, (256, 128), 0.5, 10, 0.5)
    assert (r.label_smoothing, r.triplet_margin, r.id_weight) == (0.1, 0.3, 0.25)
    assert (r.triplet_weight, r.i2t_weight, r.supcon_weight, r.triplet_metric, r.extra) == (
        1.0,
        1.0,
        0.0,
        "euclidean",
        {},
    )
    assert METHODS["clip-reid"].pixel_stats == HALF and METHODS["latex"].pixel_stats == HALF
    lt = METHODS["latex"].recipe
    t = lt.stages["train"]
    assert (t.optimizer, t.lr, t.weight_decay, t.grad_clip, t.epochs, t.min_lr) == (
        "adam",
        3.5e-4,
        1e-4,
        5.0,
        120,
        1.6e-6,
    )
    assert (t.schedule, t.warmup_from, lt.p, lt.k, lt.pad, lt.random_erasing) == ("warmup-cosine", 0.01, 16, 8, 10, 0.5)
    assert (t.weight_decay_bias, t.weight_decay_norm) == (5e-4, 5e-4)
    assert lt.extra == {"backbone_lr": 5e-6, "id_smoothing": 0.0, "attribute_smoothing": 0.1} and lt.id_weight == 0.25
    v = METHODS["clip-video"].recipe
    assert (v.p, v.k, v.clip_length, v.stages["train"].lr, v.stages["train"].milestones) == (8, 4, 8, 5e-6, (30, 50))
    vs = METHODS["vsla-clip"].recipe
    v2 = vs.stages["stage2"]
    assert (vs.p, vs.k, vs.clip_length, vs.random_erasing, vs.pad) == (8, 4, 8, 0.5, 0)
    assert (v2.lr, v2.bias_lr_factor, v2.weight_decay, v2.weight_decay_bias) == (1e-4, 2.0, 2.5e-4, 1e-4)
    assert (v2.epochs, v2.milestones) == (120, (60, 90))
    assert (v2.warmup_epochs, v2.warmup_from, vs.stages["stage1"].epochs) == (10, 0.1, 120)
    assert (vs.triplet_metric, vs.id_weight, vs.supcon_weight) == ("cosine", 0.25, 1.0) and METHODS[
        "vsla-clip"
    ].pixel_stats == IMAGENET_MEAN
    ft = METHODS["ft-clip"].recipe
    assert ft.stages["stage1"] == vs.stages["stage1"] and ft.stages["stage2"].lr == 5e-6  # configs/ft/vit_ft.yml
    assert (ft.id_weight, ft.i2t_weight, ft.supcon_weight, ft.triplet_metric) == (0.25, 1.0, 1.0, "cosine")
    ps = METHODS["promptsg"].recipe
    pt = ps.stages["train"]
    assert (pt.lr, ps.extra["new_lr"], pt.epochs, pt.milestones, pt.weight_decay) == (5e-6, 5e-5, 60, (20, 40), 1e-4)
    assert (ps.p, ps.k, ps.supcon_weight, ps.label_smoothing) == (16, 4, 0.5, 0.1)
    c = METHODS["cerberus"].recipe
    assert (c.p, c.k, c.image_size, c.stages["train"].passes, c.stages["train"].lr) == (16, 4, (384, 128), 1, 3.5e-4)
    assert (c.sampler, c.stages["train"].batches) == ("identity", "images")  # 202 batches an epoch on Market-1501
    assert (t.warmup_iters, t.warmup_epochs) == (2000, 0)
    assert {m: METHODS[m].recipe.sampler for m in METHODS} == {
        "clip-reid": "identity", "clip-video": "chunks", "latex": "identity", "cerberus": "identity",
        "vsla-clip": "chunks", "ft-clip": "chunks", "promptsg": "identity",
    }  # fmt: skip
    assert METHODS["cerberus"].pixel_stats == IMAGENET_MEAN


def test_schedules_step_as_the_official_code():
    s1, s2 = METHODS["clip-reid"].recipe.stages["stage1"], METHODS["clip-reid"].recipe.stages["stage2"]
    # stage 2: WarmupMultiStepLR stepped at the start of epoch e (from 1): step e
    assert lr_factor(s2, 0) == pytest.approx(0.1 * 0.9 + 0.1)
    assert [lr_factor(s2, e) for e in (9, 28, 29, 48, 49, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    # stage 1: timm's cosine stepped with the epoch from 1
    start = 1e-5 / 3.5e-4
    assert lr_factor(s1, 0) == pytest.approx(start + (1 - start) / 5)
    floor = 1e-6 / 3.5e-4
    assert lr_factor(s1, 4) == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 5 / 120)))
    assert lr_factor(s1, 119) == pytest.approx(floor)


def test_hparams_overrides_are_checked():
    recipe = METHODS["clip-reid"].recipe
    assert recipe.with_overrides({"p": 8, "stages": {"stage2": {"epochs": 3}}}).stages["stage2"].epochs == 3
    with pytest.raises(ValueError, match="unknown hparams \\['lr'\\]"):
        recipe.with_overrides({"lr": 1e-3})
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        recipe.with_overrides({"stages": {"train": {"epochs": 1}}})
    with pytest.raises(ValueError, match="unknown stage fields \\['epoch'\\]"):
        recipe.with_overrides({"stages": {"stage1": {"epoch": 1}}})
    assert recipe.with_overrides({"id_weight": 1.0}).id_weight == 1.0  # a typed loss weight
    latex = METHODS["latex"].recipe
    merged = latex.with_overrides({"extra": {"backbone_lr": 1e-3}}).extra  # named ones only, the rest kept
    assert merged == {"backbone_lr": 1e-3, "id_smoothing": 0.0, "attribute_smoothing": 0.1}
    with pytest.raises(ValueError, match="unknown extra hparams \\['backbone_rl'\\]"):
        latex.with_overrides({"extra": {"backbone_rl": 1.0}})

"""Fidelity, third pass: the official samplers, input pipelines, FT-CLIP's recipe and ViFi
weights, VSLA-CLIP's stage 1 and parameter total, MARS's two protocols, PromptSG's
details, CLIP-ReID+SIE+OLP and LATex's iteration warm-up (METHODS.md, 2026-12 audit)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from reiddata import ChunkIdentitySampler, RandomIdentitySampler, convert, open_dataset
from reidmodels.backbone import TINY, build_clip, load_vifi, vifi_state
from reidmodels.evaluation import evaluate_protocol
from reidmodels.methods import get_method
from reidmodels.methods.base import HALF, IMAGENET_MEAN
from reidmodels.methods.solver import lr_factor, warmup_factor
from reidmodels.transforms import PIPELINES, VIDEO_FILL, augment, resize_to_uint8

SIZES = (1, 2, 3, 4, 17, 72)  # skewed identities, as the audit asks


def _pids(sizes=SIZES) -> np.ndarray:
    return np.concatenate([[i] * n for i, n in enumerate(sizes)])


def _chunks_per_identity(k: int, sizes=SIZES) -> list[int]:
    return [max(n, k) // k for n in sizes]


@pytest.mark.parametrize("p,k", [(2, 4), (3, 2), (2, 8)])
def test_image_sampler_follows_the_official_rule(p, k):
    pids = _pids()
    sampler = RandomIdentitySampler(pids, p=p, k=k, seed=3, rank=0, world_size=1)
    chunks = _chunks_per_identity(k)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        used = Counter()
        for batch in batches:
            ids = [pids[i] for i in batch]
            owners = [ids[j * k] for j in range(p)]
            assert len(set(owners)) == p  # P distinct identities, K items each
            assert all(ids[j * k : (j + 1) * k] == [owners[j]] * k for j in range(p))
            used.update(owners)
        items = Counter(i for b in batches for i in b)
        repeated = {pids[i] for i, c in items.items() if c > 1}
        assert repeated <= {i for i, n in enumerate(SIZES) if n < k}  # only the padding repeats an item
        left = [i for i, c in enumerate(chunks) if used[i] < c]
        assert len(left) < p  # stopped only when fewer than P identities had chunks left
        assert all(used[i] <= c for i, c in enumerate(chunks))


def test_image_sampler_visits_identities_in_proportion_to_their_items():
    pids = _pids()
    sampler = RandomIdentitySampler(pids, p=2, k=4, seed=0, rank=0, world_size=1)
    visits = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        visits.update(pids[b[0]] for batch in sampler for b in [batch[j : j + 4] for j in range(0, 8, 4)])
    assert visits[5] > 3 * visits[0]  # 72 items against 1 (most of its chunks wait for partners: dropped)


def test_video_sampler_epoch_is_every_chunk_shuffled():
    pids = _pids()
    k, p = 4, 2
    sampler = ChunkIdentitySampler(pids, p=p, k=k, seed=1, rank=0, world_size=1)
    sampler.set_epoch(0)
    batches = list(sampler)
    total = sum(m - m % k for m in (max(n, k) for n in SIZES))  # sum of (m - m % K), m = max(n, K)
    assert len(batches) == total // (p * k) == len(sampler)
    items = [i for b in batches for i in b]
    assert all(len({pids[i] for i in b[j : j + k]}) == 1 for b in batches for j in range(0, p * k, k))
    repeated = {pids[i] for i, c in Counter(items).items() if c > 1}
    assert repeated <= {0, 1, 2}  # the identities under K items, padded by drawing with replacement


@pytest.mark.parametrize("cls", [RandomIdentitySampler, ChunkIdentitySampler])
def test_samplers_are_deterministic_disjoint_across_ranks_and_resume(cls):
    pids = _pids()
    one = cls(pids, p=2, k=4, seed=5, rank=0, world_size=1)
    one.set_epoch(2)
    again = cls(pids, p=2, k=4, seed=5, rank=0, world_size=1)
    again.set_epoch(2)
    assert list(one) == list(again)
    again.set_epoch(3)
    assert list(again) != list(one)
    ranks = [cls(pids, p=2, k=4, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    a, b = (list(r) for r in ranks)
    assert len(a) == len(b) == len(ranks[0]) and a and not {tuple(x) for x in a} & {tuple(x) for x in b}
    assert sorted(a + b) == sorted(list(one)[: len(a) + len(b)]) or len(a + b) <= len(list(one))
    it = iter(ranks[0])
    first = next(it)
    state = ranks[0].state_dict()
    resumed = cls(pids, p=2, k=4, seed=5, rank=0, world_size=2)
    resumed.load_state_dict(state)
    assert list(resumed) == a[1:] and first == a[0]


def test_engine_takes_the_epoch_length_from_the_sampler(converted):
    from reiddata import ShardDataset
    from reidmodels.engine.data import SAMPLERS, epoch_plan

    data = open_dataset(converted("g2a-vreid", "v2"))
    recipe = get_method("vsla-clip").recipe.with_overrides({"p": 3})  # the synthetic set has 6 identities
    labels = ShardDataset(data, "train").labels
    sampler = SAMPLERS[recipe.sampler](labels, p=recipe.p, k=recipe.k, seed=0, rank=0, world_size=1)
    passes, steps = epoch_plan(recipe.stages["stage2"], recipe, {}, sampler, 1, 0, None)
    sampler.set_epoch(0)
    assert (passes, steps) == (1, len(sampler))
    per_identity = Counter(labels.tolist())
    expected = sum(m - m % 4 for m in (max(n, 4) for n in per_identity.values())) // (recipe.p * recipe.k)
    assert steps == expected > len(labels) // (recipe.p * recipe.k)  # padding: more than tracklets // batch


# --- input pipelines -------------------------------------------------------------------


def test_resize_is_pils_own():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
    for mode, kernel in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
        ours = resize_to_uint8((256, 128), mode)(image).permute(1, 2, 0).numpy()
        assert np.array_equal(ours, np.asarray(Image.fromarray(image).resize((128, 256), kernel)))
    assert (PIPELINES["clip-reid"].train_resize, PIPELINES["clip-reid"].test_resize) == ("bicubic", "bilinear")
    assert PIPELINES["fast-reid"].test_resize == PIPELINES["vsla-clip"].test_resize == "bicubic"


def _recipe(method: str, **changes):
    return get_method(method).recipe.with_overrides(changes)


def test_padding_is_black_before_normalising():
    x = torch.ones(2, 3, 32, 16)  # white images
    recipe = _recipe("clip-reid", flip=0.0, random_erasing=0.0, pad=10)
    out = augment(x, recipe=recipe, stats=HALF, generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {-1.0, 1.0} and (out == -1.0).any()  # black is -1 with mean = std = 0.5


def test_timm_pixel_erasing_is_noise_in_its_area_range():
    recipe = _recipe("clip-reid", flip=0.0, pad=0, random_erasing=1.0)
    x = torch.zeros(200, 3, 64, 32) + 0.5  # normalised to 0 with HALF
    out = augment(x, recipe=recipe, stats=HALF, generator=torch.Generator().manual_seed(1))
    erased = (out != 0).any(1).float().mean((1, 2))
    assert 0.015 <= float(erased[erased > 0].min()) and float(erased.max()) <= 1 / 3 + 0.02
    assert float(out[out != 0].std()) == pytest.approx(1.0, abs=0.05)  # per-pixel standard normal noise


def test_fast_reid_erasing_fills_the_imagenet_mean():
    recipe = _recipe("latex", flip=0.0, pad=0, random_erasing=1.0)
    out = augment(torch.zeros(20, 3, 64, 32) + 0.5, recipe=recipe, stats=HALF, generator=torch.Generator())
    values = {
        round(v, 4) for v in out.permute(1, 0, 2, 3).reshape(3, -1)[:, (out != 0).any(1).flatten()][:, 0].tolist()
    }
    assert values == {round((m - 0.5) / 0.5, 4) for m in IMAGENET_MEAN[0]}


def test_video_erasing_per_clip_rectangle_per_frame_constant_fill():
    recipe = _recipe("vsla-clip", flip=0.0, random_erasing=0.5)
    x = torch.zeros(40, 8, 3, 64, 32) + 0.5
    out = augment(x, recipe=recipe, stats=IMAGENET_MEAN, generator=torch.Generator().manual_seed(2))
    base = (0.5 - torch.tensor(IMAGENET_MEAN[0]).view(3, 1, 1)) / torch.tensor(IMAGENET_MEAN[1]).view(3, 1, 1)
    changed = (out != base).any(2)  # (clip, frame, H, W)
    per_clip = changed.flatten(2).any(2)  # (clip, frame)
    assert bool((per_clip.all(1) | ~per_clip.any(1)).all())  # decided per clip: all frames or none
    assert 5 < int(per_clip.all(1).sum()) < 35
    areas = changed.flatten(2).sum(2)[per_clip.all(1)]
    assert bool((areas != areas[:, :1]).any())  # the rectangle is redrawn per frame
    filled = out.permute(0, 1, 3, 4, 2)[changed]
    assert torch.allclose(filled, torch.tensor(VIDEO_FILL).expand_as(filled))


# --- methods -----------------------------------------------------------------------------


def test_ft_clip_recipe_is_its_official_config():
    recipe = get_method("ft-clip").recipe
    s2 = recipe.stages["stage2"]
    assert (s2.lr, s2.epochs, s2.milestones, s2.warmup_epochs, s2.warmup_from) == (5e-6, 120, (60, 90), 10, 0.1)
    assert (s2.weight_decay, s2.weight_decay_bias, s2.bias_lr_factor) == (2.5e-4, 1e-4, 2.0)
    assert (recipe.id_weight, recipe.i2t_weight, recipe.supcon_weight, recipe.triplet_metric) == (
        0.25,
        1.0,
        1.0,
        "cosine",
    )
    assert recipe.extra == {}
    assert (recipe.sampler, recipe.transforms, recipe.p, recipe.k) == ("chunks", "vsla-clip", 8, 4)


def test_vifi_checkpoint_replaces_both_encoders(tmp_path):
    source = build_clip(TINY, image_size=(128, 64))
    state = source.clip.state_dict()
    trainer = {
        "model": {
            f"module.{k.replace('visual.', 'image_encoder.', 1) if k.startswith('visual.') else 'text_encoder.' + k}": v
            for k, v in state.items()
        }
    }
    trainer["model"]["module.prompt_learner.ctx"] = torch.zeros(4, 64)
    torch.save(trainer, tmp_path / "vifi.pth")
    target = build_clip(TINY, image_size=(128, 64))
    table = target.clip.token_embedding.weight.detach().clone()
    load_vifi(target, tmp_path / "vifi.pth")
    for name, value in target.clip.state_dict().items():
        expected = table if name == "token_embedding.weight" else state[name]
        assert torch.equal(value, expected), name
    assert "prompt_learner.ctx" not in vifi_state(trainer, "x") and "visual.conv1.weight" in vifi_state(trainer, "x")
    with pytest.raises(FileNotFoundError, match="ViFi-CLIP"):
        load_vifi(target, tmp_path / "missing.pth")
    torch.save({"model": {"visual.bogus": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a checkpoint of this architecture"):
        load_vifi(target, tmp_path / "bad.pth")


def test_vsla_clip_stage1_and_the_official_parameter_total():
    method = get_method("vsla-clip")
    s1 = method.recipe.stages["stage1"]
    assert (s1.batches, s1.feature_source, s1.feature_rounding, s1.feature_batch) == (
        "features",
        "sampler",
        "floor",
        64,
    )
    model = method.build(
        {"num_classes": 930, "cameras": [1, 2]}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128)
    )
    assert model.official_parameter_count() == 139_997_184  # the official model's total, the paper's 140.0M
    ours = sum(p.numel() for p in model.parameters())
    assert ours == 139_997_184 + 25_296_896 + 1  # ours also holds the token table and the logit scale


def test_promptsg_details():
    model = get_method("promptsg").build(
        {"num_classes": 751, "cameras": [1]}, backbone="ViT-B-16", pretrained=None, image_size=(256, 128)
    )
    from open_clip.transformer import QuickGELU

    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in model.blocks)
    width = 512
    assert float(model.blocks[0].attn.in_proj_weight.std()) == pytest.approx(width**-0.5, rel=0.05)
    dot = int(model.backbone.tokenize(["."])[0, 1])
    assert dot not in model.backbone.tokenize(["A photo of a X person"])[0].tolist()
    trainable = sum(p.numel() for n, p in model.trainable_parameters() if not n.startswith("classifier."))
    assert trainable == 94_287_872 + 512  # with the BNNeck's weight; its bias is frozen
    assert trainable - model.bottleneck.weight.numel() == 94_287_872


def test_clip_reid_sie_olp_variant():
    facts = {"num_classes": 1041, "cameras": list(range(1, 16))}  # MSMT17: 15 cameras
    model = get_method("clip-reid").build(
        facts, backbone="ViT-B-16", pretrained=None, image_size=(256, 128), stride=12, sie_camera=True
    )
    assert model.backbone.grid == (21, 10) and model.backbone.visual.conv1.stride == (12, 12)
    visual = sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone.clip.visual."))
    assert visual == 86_140_416 + (211 - 129) * 768  # the positions of a 21 x 10 grid
    assert model.cv_embed.shape == (15, 768)
    stage2 = sum(p.numel() for _, p in model.trainable_parameters("stage2"))
    assert stage2 == visual + 15 * 768 + 1280 * 1041 + 1280
    x = torch.zeros(2, 3, 256, 128)
    with pytest.raises(ValueError, match="camid"):
        model.embed(x)
    with torch.no_grad():
        a = model.eval().embed(x, camid=torch.tensor([1, 1]))
        b = model.embed(x, camid=torch.tensor([1, 2]))
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])  # the camera changes the feature


def test_latex_warms_up_over_2000_iterations():
    plan = get_method("latex").recipe.stages["train"]
    assert (plan.warmup_iters, plan.warmup_epochs) == (2000, 0)
    assert warmup_factor(plan, 0) == pytest.approx(0.01) and warmup_factor(plan, 1000) == pytest.approx(0.505)
    assert warmup_factor(plan, 2000) == 1.0 and lr_factor(plan, 0) == 1.0  # the cosine starts at the full rate


# --- MARS ---------------------------------------------------------------------------------


def test_mars_has_both_protocols_and_the_papers_is_the_default(synth_tree, tmp_path):
    out = tmp_path / "mars"
    convert("mars", synth_tree("mars"), out, shard_size=40)
    data = open_dataset(out)
    assert data.manifest["protocol_order"] == ["standard", "torchreid"]
    standard, torchreid = data.protocols["standard"], data.protocols["torchreid"]
    assert np.array_equal(standard.query, torchreid.query)
    assert set(standard.gallery) == set(torchreid.gallery) | set(standard.query)
    assert data.manifest["protocols"]["standard"]["query_in_gallery"] is True
    assert "query_in_gallery" not in data.manifest["protocols"]["torchreid"]
    pids = data.index.column("pid").to_numpy()
    features = np.eye(pids.max() + 1)[pids] + 0.01 * np.random.default_rng(0).random((len(pids), pids.max() + 1))
    a, b = evaluate_protocol(features, data, "standard"), evaluate_protocol(features, data, "torchreid")
    assert a["queries"] >= b["queries"] and a["mAP"] == pytest.approx(1.0)  # a query never matches itself
    from reiddata.cli import main

    assert main(["verify", str(out)]) == 0

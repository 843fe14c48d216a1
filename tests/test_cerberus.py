"""Cerberus: margins, the prototype-relation regulariser, PAR, APS with partial queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import cpu_train_config

from reiddata import ShardDataset, open_dataset
from reidmodels import build_model
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.evaluation import label_based_mean_accuracy, retrieval_metrics
from reidmodels.factory import build_model_from_checkpoint
from reidmodels.inputs import Collate, model_inputs
from reidmodels.methods import dataset_facts
from reidmodels.methods.cerberus import Cerberus, adaptive_margins, align_rows, align_rows_loop, aps_scores
from reidmodels.transforms import resize_to_uint8


def test_adaptive_margin_formula():
    margins = adaptive_margins([0, 5, 10], persons=10)
    expected = [math.log(0.4 * n / 10 + 1.8) for n in (0, 5, 10)]
    assert margins.tolist() == pytest.approx(expected)
    assert margins[0] < margins[2]  # rarer SIDs get smaller margins


def test_alignment_keeps_the_rows_above_sigma_resized_to_full_height():
    feature = torch.zeros(1, 4, 12, 4)
    feature[0, :, 3:9] = 10.0  # rows 3..8 hold the person
    feature[0, 0, 3] = 20.0
    aligned = align_rows(feature, sigma=5.0)
    assert aligned.shape == feature.shape
    assert float(aligned[0, 1].min()) > 5  # the background rows are gone
    assert torch.equal(align_rows(torch.zeros(1, 4, 12, 4)), torch.zeros(1, 4, 12, 4))  # nothing above sigma


def test_batched_alignment_equals_the_per_map_interpolation():
    g = torch.Generator().manual_seed(0)
    for _ in range(100):  # heights 3..23, some maps with no row above sigma, some with every row
        h = int(torch.randint(3, 24, (1,), generator=g))
        x = torch.randn(5, 4, h, 6, generator=g) * 3
        sigma = float(torch.rand(1, generator=g) * 8)
        assert torch.allclose(align_rows(x, sigma), align_rows_loop(x, sigma), atol=1e-5, rtol=1e-5)


def test_sid_prototypes_cover_every_sid_and_the_parameter_count(converted):
    model = build_model("cerberus", dataset=converted("market1501"))
    manifest_groups = {
        g["name"]: g["num_sids"] for g in open_dataset(converted("market1501")).manifest["attributes"]["groups"]
    }
    assert {g: p.shape[0] for g, p in model.prototypes.items()} == manifest_groups  # unseen SIDs too
    total = sum(p.numel() for p in model.parameters())
    classifiers = sum(c.weight.numel() for c in model.classifiers.values())
    values = sum(v.numel() for v in model.values.values())
    prototypes = sum(p.numel() for p in model.prototypes.values())
    # the paper's 49.3M: backbone + duplicated branch + five FC+BN heads, without the
    # dataset-sized classifiers, prototypes and value vectors
    assert total - classifiers - values - prototypes == pytest.approx(49.31e6, abs=0.01e6)


def test_the_tiny_backbone_is_a_small_resnet_with_the_same_heads_and_no_weights(converted):
    model = build_model("cerberus", dataset=converted("market1501"), backbone="reid-tiny")
    assert [p[0].in_features for p in model.partials.values()] == [512] * 5  # BasicBlock ResNet: 512 channels
    with torch.no_grad():
        maps = model.global_branch(model.stem(torch.randn(1, 3, 128, 64)))
    assert maps.shape == (1, 512, 8, 4)  # conv5 keeps stride 1, as in the ResNet-50
    with pytest.raises(ValueError, match="reid-tiny has no pretrained weights"):
        build_model("cerberus", dataset=converted("market1501"), backbone="reid-tiny", pretrained="r50.pth")


def test_regulariser_gives_equal_residuals_for_pairs_differing_in_the_same_attribute(converted):
    model = build_model("cerberus", dataset=converted("market1501"))
    params = list(model.prototypes.parameters()) + list(model.values.parameters())
    optimizer = torch.optim.Adam(params, lr=0.05)
    first = float(model.relation_loss().detach())
    for _ in range(400):
        optimizer.zero_grad()
        loss = model.relation_loss()
        loss.backward()
        optimizer.step()
    assert float(model.relation_loss()) < 0.01 * first
    # head = (hat, hair): SID = 2 * hat + hair. hat no->yes, with short hair and with long hair
    assert model.group_attributes["head"] == ["hat", "hair"]
    p = model.prototypes["head"].detach()
    r_short, r_long = p[2] - p[0], p[3] - p[1]
    assert torch.allclose(r_short, r_long, atol=0.05 * float(r_short.norm()))


def test_mean_accuracy_and_retrieval_metrics():
    assert label_based_mean_accuracy(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(
        ((0.5 + 1.0) / 2 + (1.0 + 0.5) / 2) / 2
    )
    out = retrieval_metrics(np.array([[0.9, 0.1, 0.5]]), np.array([[False, True, True]]))
    assert out == {"mAP": pytest.approx((1 / 2 + 2 / 3) / 2), "rank1": 0.0, "queries": 1}


# 20 epochs of one identity pass at a constant 3e-4, no weight decay, no erasing: enough to test PAR and APS
CONSTANT = {"epochs": 20, "lr": 3e-4, "passes": 1, "warmup_epochs": 0, "schedule": "constant", "weight_decay": 0.0}


@pytest.fixture(scope="module")
def trained(converted, tmp_path_factory):
    out = tmp_path_factory.mktemp("cerberus") / "run"
    hparams = {"image_size": [128, 64], "p": 4, "k": 2, "random_erasing": 0.0, "stages": {"train": CONSTANT}}
    config = cpu_train_config(converted("market1501"), out, method="cerberus", hparams=hparams)
    train(config)
    return out


def test_par_returns_valid_values_and_aps_ranks_partial_matches_first(converted, trained, tmp_path):
    data = open_dataset(converted("market1501"))
    model, _, _ = build_model_from_checkpoint(trained, device=torch.device("cpu"))
    values = model.attribute_values
    for g in model.group_names:
        for sid in range(model.prototypes[g].shape[0]):
            assert all(v in values[a] for a, v in model.sid_attributes(g, sid).items())
    # APS on the training images: a partial query (hair and gender, other groups unknown)

    train_set = ShardDataset(data, "train", decode="numpy", transform=resize_to_uint8((128, 64)))
    batch = Collate(Cerberus, dataset_facts(data))([train_set[i] for i in range(len(train_set))])
    with torch.no_grad():
        out = model.outputs(model_inputs(batch, torch.device("cpu"), stats=Cerberus.pixel_stats))
    partials = torch.stack([torch.nn.functional.normalize(out["partial"][g], dim=1) for g in model.group_names], 1)
    labels = [train_set.decoder(train_set.raw(i))["attributes"] for i in range(len(train_set))]
    aps, chance = [], []
    rng = np.random.default_rng(0)
    for gender in ("male", "female"):
        for hair in ("short", "long"):
            query = {"gender": gender, "hair": hair}
            relevant = np.array([a["gender"] == gender and a["hair"] == hair for a in labels])
            if not relevant.any():
                continue
            aps.append(retrieval_metrics(aps_scores(model, partials, query)[None].numpy(), relevant[None])["mAP"])
            chance.append(retrieval_metrics(rng.random((1, len(labels))), relevant[None])["mAP"])
    assert np.mean(aps) > np.mean(chance) + 0.2
    metrics = evaluate(
        EvalConfig(
            data=str(converted("market1501")), checkpoint=str(trained), out=str(tmp_path), workers=0, device="cpu"
        )
    )
    assert 0 <= metrics["par"]["mA"] <= 1 and len(metrics["par"]["per_attribute"]) == 12
    assert {"full", "partial_mean", "without_carrying"} <= set(metrics["aps"])
    assert metrics["standard"]["queries"] > 0

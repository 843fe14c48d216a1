"""reidmodels: the CLIP backbone, losses, training (single process and DDP on CPU), evaluation."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
from conftest import cpu_train_config

from reidmodels import losses
from reidmodels.backbone import TINY, _open_clip, build_clip
from reidmodels.engine import EvalConfig, TrainConfig, evaluate, train


def test_tiny_backbone_tokens_prompts_and_text_embeddings():
    backbone = build_clip(TINY)
    assert backbone.grid == (16, 8) and backbone.visual.positional_embedding.shape == (1 + 16 * 8, 64)
    images = torch.randn(2, 3, 256, 128)
    pooled, tokens = backbone.encode_image(images)
    assert pooled.shape == (2, 64) and tokens.shape == (2, 128, 64)
    prompts = torch.randn(2, 3, backbone.width)  # deep prompts: 3 tokens in each of the 2 blocks
    prompted, prompted_tokens = backbone.encode_image(images, prompts)
    assert prompted_tokens.shape == tokens.shape and not torch.allclose(prompted, pooled)
    ids = backbone.tokenize(["A photo of a X X X X person."])
    via_embeddings = backbone.encode_text_embeddings(backbone.token_embeddings(ids), ids.argmax(-1))
    assert torch.allclose(via_embeddings, backbone.clip.encode_text(ids), atol=1e-5)


def test_pretrained_from_a_local_checkpoint_resizes_positions(tmp_path):
    open_clip = _open_clip()  # registers the tiny config
    square = open_clip.create_model(TINY)  # the tiny config at 224x224: a 14x14 grid
    path = tmp_path / "tiny.pt"
    torch.save(square.state_dict(), path)
    backbone = build_clip(TINY, pretrained=str(path))
    assert backbone.visual.positional_embedding.shape == (1 + 16 * 8, 64)
    assert torch.equal(backbone.visual.conv1.weight, square.visual.conv1.weight)
    # the class position is kept; the grid is resized from 14x14
    assert torch.equal(backbone.visual.positional_embedding[0], square.visual.positional_embedding[0])


def test_weights_load_strictly(tmp_path):
    state = _open_clip().create_model(TINY).state_dict()
    del state["visual.ln_post.weight"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short.pt: not a checkpoint of this architecture: missing \['visual.ln_post"):
        build_clip(TINY, pretrained=str(tmp_path / "short.pt"))


def test_pretrained_that_cannot_be_had_says_what_to_do():
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag of reid-tiny"):
        build_clip(TINY, pretrained="openai")
    with pytest.raises(RuntimeError, match="pass its local path"):
        build_clip("ViT-B-16", pretrained="openai")  # offline here: HF_HUB_OFFLINE is set


def test_losses_on_worked_examples():
    features = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # (hardest positive, hardest negative) per anchor: 0 -> (1, 3), 1 -> (1, sqrt 10), 2 -> (1, 3), 3 -> (1, 4)
    d = {0: (1.0, 3.0), 1: (1.0, 10**0.5), 2: (1.0, 3.0), 3: (1.0, 4.0)}
    expected = np.mean([max(ap - an + 2.5, 0) for ap, an in d.values()])
    assert losses.triplet_hard(features, labels, margin=2.5).item() == pytest.approx(expected, rel=1e-5)
    soft = np.mean([np.log1p(np.exp(ap - an)) for ap, an in d.values()])
    assert losses.triplet_hard(features, labels, margin=None).item() == pytest.approx(soft, rel=1e-5)
    logits = torch.tensor([[2.0, 0.0]])
    smooth = -(0.95 * torch.log_softmax(logits, 1)[0, 0] + 0.05 * torch.log_softmax(logits, 1)[0, 1])
    assert losses.cross_entropy_smooth(logits, torch.tensor([0]), 0.1).item() == pytest.approx(smooth.item())
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    assert (
        losses.supcon(a, a, labels, labels, 0.1)
        < losses.supcon(a, a.flip(0), labels, labels.flip(0) * 0 + 5, 0.1) + 1e3
    )


def _config(data, out, *, epochs: int = 2, method: str = "clip-reid", **kw) -> TrainConfig:
    stages = {"stage1": {"epochs": 1}, "stage2": {"epochs": epochs, "lr": 3e-4}}
    if method == "clip-video":
        stages = {"train": {"epochs": epochs, "lr": 3e-4}}
    hparams = {"p": 3, "k": 2, "stages": stages, **kw.pop("hparams", {})}
    return cpu_train_config(data, out, method=method, hparams=hparams, **{"max_steps_per_epoch": 2, **kw})


def test_train_resume_and_evaluate_images(converted, tmp_path):
    data = converted("market1501")
    summary = train(_config(data, tmp_path / "run"))
    assert summary["batches"] == 1 + 2 * 2  # stage 1: 43 features in one batch of 64
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert saved["epochs_done"] == {"stage1": 1, "stage2": 2}
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,stage,epoch,loss" and len(log) == 4
    again = train(_config(data, tmp_path / "run", epochs=3))  # resume: only the new epoch runs
    assert again["batches"] == 2
    metrics = evaluate(
        EvalConfig(
            data=str(data), checkpoint=str(tmp_path / "run"), out=str(tmp_path / "eval"), workers=0, device="cpu"
        )
    )
    standard = metrics["standard"]
    assert 0 < standard["mAP"] <= 1 and 0 < standard["chance_mAP"] < 1 and standard["match"] == "camera"
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["standard"] == standard
    cmc = (tmp_path / "eval" / "cmc.csv").read_text().splitlines()
    assert cmc[0] == "protocol,rank,cmc" and len(cmc) > 10
    assert len(list((tmp_path / "eval" / "features").glob("*.parquet"))) == 1  # cached per version + checkpoint


def test_clip_video_trains_and_evaluates_tracklets(converted, tmp_path):
    data = converted("g2a-vreid", "v2")
    config = _config(data, tmp_path / "run", method="clip-video", epochs=1, hparams={"clip_length": 3})
    assert train(config)["batches"] == 2
    metrics = evaluate(
        EvalConfig(
            data=str(data),
            checkpoint=str(tmp_path / "run"),
            out=str(tmp_path / "eval"),
            workers=0,
            device="cpu",
            clip_length=3,
        )
    )
    assert set(metrics) >= {"g2a", "a2g"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: TrainConfig, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    summary = train(config)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(summary, f)
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_on_cpu_with_gloo(converted, tmp_path):
    config = _config(converted("market1501"), tmp_path / "run", epochs=1, max_steps_per_epoch=None)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["batches"] == ranks[1]["batches"] > 0  # the same number of (disjoint) batches
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]  # gradients were averaged
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_every_pipeline_recipe_is_a_valid_config():
    from pathlib import Path

    from reidmodels.engine import load_config
    from reidmodels.methods import get_method

    recipes = sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.yaml"))
    assert len(recipes) >= 6
    for recipe in recipes:
        config = load_config(TrainConfig, recipe, "train")
        assert config.pretrained and (config.backbone == "ViT-B-16" or config.method == "cerberus")
        assert load_config(EvalConfig, recipe, "evaluate").checkpoint == config.out
        get_method(config.method).recipe.with_overrides(config.hparams)  # valid overrides
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        load_config(TrainConfig, recipes[0], "train", epoch=3)

"""What a training stage iterates: the training loader and its identity sampler, how many
batches an epoch has, and the batches themselves (P x K from the loader, resumable
mid-epoch; or, for a ``features`` stage, features computed once and shuffled)."""

from __future__ import annotations

import math

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from reiddata import ChunkIdentitySampler, IdentityBalancedSampler, RandomIdentitySampler

from ..inputs import Collate, Transforms, model_inputs, on_device, shard_reader
from ..methods import Method, Recipe
from ..runtime import gathered

__all__ = [
    "FEATURE_PASS",
    "SAMPLERS",
    "epoch_batches",
    "epoch_plan",
    "feature_batches",
    "stage_features",
    "train_loader",
]

SAMPLERS = {"identity": RandomIdentitySampler, "chunks": ChunkIdentitySampler, "balanced": IdentityBalancedSampler}
FEATURE_PASS = 1_000_000  # the sampler and frame epoch of a stage's feature pass: none that training uses


def train_loader(run, data, facts: dict, recipe: Recipe, transforms: Transforms):
    """``(reader, sampler, loader)`` of the train split: the recipe's sampler over the rank's
    share (``run``: config, device, rank, world), ``config.workers`` workers; the loader's
    ``state_dict`` is the sampler's and the workers' position (a mid-epoch checkpoint resumes there)."""
    config, rank, world = run.config, run.rank, run.world
    reader = shard_reader(
        data, split="train", transform=transforms.train, clip_mode=recipe.clip_mode, clip_length=recipe.clip_length,
        seed=config.seed,
    )  # fmt: skip
    sampler = SAMPLERS[recipe.sampler](
        reader.labels, p=recipe.p, k=recipe.k, seed=config.seed, rank=rank, world_size=world
    )
    loader = StatefulDataLoader(
        reader,
        batch_sampler=sampler,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=run.device.type == "cuda",
        collate_fn=Collate(run.method, facts),
    )
    return reader, sampler, loader


def epoch_plan(plan, recipe: Recipe, facts: dict, sampler, world: int, epoch: int, features) -> tuple[int, int]:
    """``(sampler passes, batches)`` of one epoch, per rank, as the sampler counts them.

    The official samplers (``identity``, ``chunks``): ``passes`` passes (1 unless a recipe
    says otherwise), each as long as that sampler epoch is. The ``balanced`` one: about train
    images / (P K) batches (``images``) or ``passes`` x every identity once
    (``identities``). A ``features`` stage: its feature batches, ceil(N / batch)."""
    if plan.batches == "features":
        n = len(features["label"])
        batches = math.ceil(n / plan.feature_batch) if plan.feature_rounding == "ceil" else n // plan.feature_batch
        return 1, batches if world == 1 else batches // world  # every rank the same count, or DDP waits
    if plan.batches not in ("images", "identities"):
        raise ValueError(f"unknown batches {plan.batches!r}: images, identities or features")
    if recipe.sampler != "balanced":  # the official samplers: whole passes
        steps = 0
        for r in range(plan.passes):
            sampler.set_epoch(epoch * plan.passes + r)
            steps += len(sampler)
        return plan.passes, steps
    if plan.batches == "identities":
        return plan.passes, plan.passes * len(sampler)
    steps = max(1, facts["train_samples"] // (recipe.p * recipe.k * world))
    return math.ceil(steps / max(len(sampler), 1)), steps


def epoch_batches(loader, sampler, epoch: int, passes: int, steps: int, batches, resume: dict | None):
    """``(pass, batch)`` for one epoch of ``steps`` P x K batches in ``passes`` sampler
    epochs (each its own seed); from a mid-epoch ``resume`` position. ``batches(loader)``
    iterates the loader (with a progress bar or not)."""
    done = resume["steps"] if resume else 0
    for r in range(resume["pass"] if resume else 0, passes):
        sampler.set_epoch(epoch * passes + r)
        if resume and r == resume["pass"]:
            loader.load_state_dict(resume["loader"])  # the next iter goes on after its last batch
        for batch in batches(loader):
            if done >= steps:
                return
            done += 1
            yield r, batch


def feature_batches(features: dict, plan, seed: int, epoch: int, steps: int, rank: int, world: int, resume):
    """``(0, batch)``: a seeded random order of the features each epoch, batches of
    ``feature_batch``; rank r takes batches r, r + W, ..."""
    order = torch.randperm(len(features["label"]), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    chunks = order.split(plan.feature_batch)[rank::world][:steps]
    for chunk in chunks[resume["steps"] if resume else 0 :]:
        index = chunk.to(features["label"].device)
        keys = [features["key"][i] for i in chunk.tolist()]
        yield 0, {"feature": features["feature"][index], "label": features["label"][index], "key": keys}


@torch.no_grad()
def stage_features(model: Method, stage: str, data, recipe: Recipe, transforms: Transforms, loader, sampler, run):
    """The features a ``features`` stage trains on, computed once: every train item with the
    test transform (``plain``: CLIP-ReID's), or one pass of the training loader, its sampler,
    random frames and augmentation (``sampler``: VSLA-CLIP's; gathered from every rank)."""
    plan = recipe.stages[stage]
    model.eval()
    augmented = plan.feature_source == "sampler"
    if augmented:
        sampler.set_epoch(FEATURE_PASS)
        loader.dataset.set_epoch(FEATURE_PASS)
        batches = loader
    else:
        dataset = shard_reader(
            data, split="train", transform=transforms.test, train=False, clip_mode=recipe.clip_mode,
            clip_length=recipe.clip_length,
        )  # fmt: skip
        batches = torch.utils.data.DataLoader(
            dataset, batch_size=64, num_workers=run.config.workers, collate_fn=loader.collate_fn
        )
    features, labels, keys = [], [], []
    for batch in batches:
        x = model_inputs(
            batch, run.device, stats=model.pixel_stats, generator=run.generator if augmented else None,
            recipe=recipe if augmented else None,
        )  # fmt: skip
        features.append(model.stage_features(stage, x, on_device(batch, run.device)).float())
        labels.append(batch["label"].to(run.device))
        keys += batch["key"]
    out = {"feature": torch.cat(features), "label": torch.cat(labels), "key": keys}
    if augmented and run.world > 1:  # each rank saw its share of the pass: all of them train on all
        out = gathered(out, run.world)
    return out

"""Using a trained model: ``reidmodels.load(...).embed`` gives ``evaluate``'s features."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import cpu_train_config

from reiddata import ShardDataset, open_dataset
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.use import decode_any, load

TINY = {"p": 3, "k": 2, "stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}}


def _evaluated(data, run, out) -> np.ndarray:
    """evaluate's own features of the test rows (its Parquet cache), L2-normalised, in index order."""
    evaluate(EvalConfig(data=str(data), checkpoint=str(run), out=str(out), workers=0, device="cpu"))
    (cache,) = (out / "features").glob("*.parquet")
    table = pq.read_table(cache)
    features = np.stack(table.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
    return table.column("key").to_pylist(), features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.mark.parametrize(("source", "method", "hparams"), [
    ("market1501", "clip-reid", TINY),
    ("agreid-v2", "latex", {"p": 3, "k": 2, "stages": {"train": {"epochs": 1}}}),
    ("mars", "clip-video", {"p": 3, "k": 2, "clip_length": 2, "stages": {"train": {"epochs": 1}}}),
])  # fmt: skip
def test_embed_equals_evaluate(converted, tmp_path, source, method, hparams):
    data = converted(source, "nested" if source == "agreid-v2" else None)
    train(cpu_train_config(data, tmp_path / "run", method=method, hparams=hparams, max_steps_per_epoch=2))
    keys, expected = _evaluated(data, tmp_path / "run", tmp_path / "eval")
    ds = open_dataset(data)
    rows = np.asarray([ds.index.column("key").to_pylist().index(k) for k in keys])
    reader = ShardDataset(ds, rows=rows, decode=None)
    views = [ds.index.column("view")[int(r)].as_py() for r in rows]
    cams = [ds.index.column("camid")[int(r)].as_py() for r in rows]
    model = load(tmp_path / "run", device="cpu")
    if model.video:
        members = [reader.raw(i) for i in range(len(reader))]
        items = [[m[f"{j:04d}.jpg"] for j in range(sum(k.endswith(".jpg") for k in m))] for m in members]
    else:
        items = [reader.raw(i)["jpg"] for i in range(len(reader))]
    got = model.embed(items, view=views, camid=cams, batch_size=7)
    assert got.shape == expected.shape == (len(rows), model.facts["feature_size"])
    assert np.abs(got - expected).max() < 1e-5
    assert model.facts["method"] == method and model.facts["trained_on"] == str(data)


def test_embed_takes_paths_arrays_pil_and_tensors(converted, tmp_path):
    import torch
    from PIL import Image

    data = converted("market1501")
    train(cpu_train_config(data, tmp_path / "run", hparams=TINY, max_steps_per_epoch=1))
    model = load(tmp_path / "run", device="cpu")
    jpeg = ShardDataset(open_dataset(data), "query", decode=None).raw(0)["jpg"]
    (tmp_path / "crop.jpg").write_bytes(jpeg)
    array = decode_any(jpeg)
    forms = [str(tmp_path / "crop.jpg"), jpeg, array, Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1)]
    features = model.embed(forms)
    assert features.shape[0] == 5 and np.abs(features - features[0]).max() < 1e-6
    with pytest.raises(ValueError, match=r"notes\.txt: not an image OpenCV can decode"):
        (tmp_path / "notes.txt").write_text("hello")
        model.embed([str(tmp_path / "notes.txt")])
    with pytest.raises(ValueError, match="expected uint8 H x W x 3"):
        model.embed([np.zeros((8, 8), dtype=np.uint8)])

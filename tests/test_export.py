"""ONNX export of every method's test-feature graph, checked against torch by onnxruntime; extract; model cards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import cpu_train_config

from reiddata import ShardDataset, open_dataset
from reidmodels.cli import main
from reidmodels.engine import EvalConfig, evaluate, train
from reidmodels.export import export_onnx
from reidmodels.use import load

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]')")

IMAGE = {"p": 3, "k": 2, "image_size": [64, 32]}
VIDEO = {"p": 3, "k": 2, "image_size": [64, 32], "clip_length": 2}
CASES = {  # method: (source, hparams, option sets)
    "clip-reid": ("market1501", IMAGE | {"stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}}),
    "promptsg": ("market1501", IMAGE | {"stages": {"train": {"epochs": 1}}}),
    "latex": ("agreid-v2", IMAGE | {"stages": {"train": {"epochs": 1}}}),
    # (its local branch cuts the map into three rows: 128 x 64 crops, the synthetic size)
    "cerberus": ("market1501", IMAGE | {"image_size": [128, 64], "stages": {"train": {"epochs": 1}}}),
    "vsla-clip": ("mars", VIDEO | {"stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1}}}),
    "clip-video": ("mars", VIDEO | {"stages": {"train": {"epochs": 1}}}),
}


@pytest.fixture(scope="module")
def runs(converted, tmp_path_factory):
    made = {}

    def make(method: str):
        if method not in made:
            source, hparams = CASES[method]
            data = converted(source, "nested" if source == "agreid-v2" else None)
            out = tmp_path_factory.mktemp("runs") / method
            train(cpu_train_config(data, out, method=method, hparams=hparams, max_steps_per_epoch=1))
            made[method] = (data, out)
        return made[method]

    return make


@pytest.mark.parametrize(
    ("method", "mode"),
    [("clip-reid", None), ("promptsg", "composed"), ("promptsg", "simplified"), ("latex", None), ("cerberus", None),
     ("vsla-clip", None), ("clip-video", None)],
)  # fmt: skip
def test_onnxruntime_equals_torch(runs, tmp_path, method, mode, capsys):
    import onnxruntime

    _, run = runs(method)
    out = tmp_path / "model.onnx"
    result = export_onnx(run, out, mode=mode)
    print(f"{method} {mode or ''}: max abs diff {result['max_abs_diff']:.2e}")  # the note's figures (pytest -s)
    assert result["max_abs_diff"] <= 1e-4 and out.is_file()
    # a batch size the export never saw (dynamic batch), against load(...).embed's own graph
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shape = result["input_shape"][1:]
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, *shape), dtype=np.uint8)
    model = load(run, device="cpu")
    batch = {"frames": list(torch.from_numpy(pixels).unbind(1))} if model.video else {"image": torch.from_numpy(pixels)}
    expected = model.features(batch, {k: v.expand(3) for k, v in model.fields(1).items()})
    if mode == "simplified":
        assert not np.allclose(session.run(None, {"pixels": pixels})[0], expected, atol=1e-3)
    else:
        assert np.abs(session.run(None, {"pixels": pixels})[0] - expected).max() < 1e-4


def test_export_refuses_what_the_model_cannot_take(runs, tmp_path):
    _, run = runs("clip-reid")
    with pytest.raises(ValueError, match="--mode is PromptSG's"):
        export_onnx(run, tmp_path / "m.onnx", mode="simplified")
    with pytest.raises(ValueError, match="view 'sideways' is not one of"):
        export_onnx(run, tmp_path / "m.onnx", view="sideways")
    _, video = runs("vsla-clip")
    with pytest.raises(ValueError, match=r"vsla-clip cannot take clips of 0 frames"):
        export_onnx(video, tmp_path / "v.onnx", clip_length=0)
    assert not list(tmp_path.iterdir())


def test_extract_a_folder_equals_embed_and_lists_bad_files(runs, tmp_path, capsys):
    data, run = runs("clip-reid")
    reader = ShardDataset(open_dataset(data), "query", decode=None)
    crops = tmp_path / "crops" / "nested"
    crops.mkdir(parents=True)
    for i in range(9):
        (crops / f"{i:02d}.jpg").write_bytes(reader.raw(i)["jpg"])
    (crops / "notes.txt").write_text("not an image")
    out = tmp_path / "features.parquet"
    args = ["extract", str(run), str(tmp_path / "crops"), str(out), "--workers", "2", "--batch-size", "4"]
    assert main(args) == 1  # one file did not decode
    err = capsys.readouterr().err
    assert "nested/notes.txt" in err and (tmp_path / "features.parquet.failed.txt").is_file()
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == [f"nested/{i:02d}.jpg" for i in range(9)]
    features = np.stack(table.column("feature").to_numpy(zero_copy_only=False))
    expected = load(run, device="cpu").embed([str(crops / f"{i:02d}.jpg") for i in range(9)])
    assert np.abs(features - expected).max() < 1e-5
    facts = json.loads(table.schema.metadata[b"reidmodels"])
    assert facts["method"] == "clip-reid" and facts["feature_size"] == features.shape[1]
    assert main([*args, "--skip-bad", "--half", "--overwrite"]) == 0
    assert pq.read_table(out).schema.field("feature").type.value_type == "halffloat"
    (tmp_path / "empty").mkdir()
    assert main(["extract", str(run), str(tmp_path / "empty"), str(tmp_path / "e.parquet")]) == 2
    assert "no files to embed" in capsys.readouterr().err


def test_extract_a_dataset_equals_evaluate(runs, tmp_path):
    data, run = runs("clip-reid")
    evaluate(EvalConfig(data=str(data), checkpoint=str(run), out=str(tmp_path / "eval"), workers=0, device="cpu"))
    (cache,) = (tmp_path / "eval" / "features").glob("*.parquet")
    cached = pq.read_table(cache)
    assert main(["extract", str(run), str(data), str(tmp_path / "all.parquet"), "--workers", "0"]) == 0
    table = pq.read_table(tmp_path / "all.parquet")
    keys = table.column("key").to_pylist()
    ours = dict(zip(keys, np.stack(table.column("feature").to_numpy(zero_copy_only=False))))
    theirs = np.stack(cached.column("feature").to_numpy(zero_copy_only=False))
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    got = np.stack([ours[k] for k in cached.column("key").to_pylist()])
    assert len(keys) == len(open_dataset(data).index) and np.abs(got - theirs).max() < 1e-5
    assert set(table.column_names) >= {"key", "split", "pid", "camid", "view", "feature"}


def test_a_model_card_beside_every_checkpoint(runs, tmp_path):
    data, run = runs("latex")
    card = json.loads((run / "model.json").read_text())
    assert card["method"] == "latex" and card["feature_size"] == load(run, device="cpu").facts["feature_size"]
    assert card["parameters"]["total"] > 0 and card["deviations"] and card["metrics"] == {}
    version = open_dataset(data).version
    assert card["trained_on"]["versions"] == {"agreid-v2": version}
    metrics = evaluate(
        EvalConfig(data=str(data), checkpoint=str(run), out=str(tmp_path / "e"), workers=0, device="cpu")
    )
    card = json.loads((run / "model.json").read_text())
    assert card["metrics"][f"agreid-v2@{version}"]["protocols"]["a2c"]["mAP"] == metrics["a2c"]["mAP"]
    text = (run / "MODEL.md").read_text()
    assert "| agreid-v2 |" in text and "reidmodels.load" in text and "LATex-full" in text
    # a card someone else wrote is never touched
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "model.json").write_text('{"mine": true}')
    from reidmodels.card import write_model_card

    assert write_model_card(tmp_path / "theirs", info={}, model=None) is None
    assert (tmp_path / "theirs" / "model.json").read_text() == '{"mine": true}'
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "MODEL.md").write_text("my own notes")
    assert write_model_card(tmp_path / "notes", info={}, model=None) is None
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["MODEL.md"]


def test_bad_checkpoints_are_named(tmp_path, runs):
    _, run = runs("clip-reid")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    for path, message in ((truncated, "truncated.pt: refused"), (tmp_path / "other.pt", "other.pt: not a reidmodels")):
        with pytest.raises(ValueError, match=message):
            load(path, device="cpu")

"""``reidmodels export RUN OUT.onnx``: the test-feature graph of a trained model, checked by onnxruntime.

The graph takes what a deployment has after cropping and resizing: ``pixels``, uint8,
(batch, 3, H, W) at the recipe's size (video: (batch, T, 3, H, W), T the recipe's clip
length or ``clip_length``), the batch dynamic; it normalises as the model was trained
and returns ``features`` (batch, feature_size), L2-normalised: ``evaluate``'s feature.
A method whose feature needs a view (LATex) or camera (CLIP-ReID's SIE) gets the
``view`` and ``camid`` fixed at export (defaults: ground, the first trained camera).
PromptSG: ``mode`` ``composed`` (its test feature, the default) or ``simplified``.

At export the ONNX model is run by onnxruntime on 8 random inputs and compared with
torch; the largest absolute difference is returned, and above ``tolerance`` (1e-4) the
export fails and nothing is written.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .methods.base import VIEWS
from .use import load

__all__ = ["MODES", "export_onnx"]

MODES = {"composed": 0, "simplified": 1}  # PromptSG's two inference modes: which test output is the feature


class FeatureGraph(nn.Module):
    """uint8 pixels -> L2-normalised test features, with the normalisation inside."""

    def __init__(self, method: nn.Module, *, view: int, camid: int, output: int) -> None:
        super().__init__()
        self.method, self.output = method, output
        mean, std = method.pixel_stats
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("view", torch.tensor([view], dtype=torch.int64))
        self.register_buffer("camid", torch.tensor([camid], dtype=torch.int64))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() / 255 - self.mean) / self.std
        n = pixels.shape[0]
        outputs = self.method.test_outputs(x, view=self.view.expand(n), camid=self.camid.expand(n))
        return F.normalize(outputs[self.output].float(), dim=1)


def export_onnx(
    run: str | Path,
    out: str | Path,
    *,
    mode: str | None = None,
    view: str = "ground",
    camid: int | None = None,
    clip_length: int | None = None,
    opset: int = 17,
    tolerance: float = 1e-4,
    checks: int = 8,
) -> dict:
    """Write ``out`` (ONNX) and return ``{"out", "max_abs_diff", "input_shape", "feature_size", "mode"}``."""
    import onnxruntime

    model = load(run, device="cpu")
    method, recipe = model.method, model.info["recipe"]
    output = _output(model.info["method"], mode)
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    cam = camid if camid is not None else (model.info["facts"].get("cameras") or [0])[0]
    graph = FeatureGraph(method, view=VIEWS.index(view), camid=int(cam), output=output).eval()
    if model.video and clip_length is not None and clip_length < 1:
        raise ValueError(f"{run}: {model.info['method']} cannot take clips of {clip_length} frames (at least 1)")
    h, w = recipe["image_size"]
    shape = (3, h, w) if not model.video else (clip_length or recipe["clip_length"], 3, h, w)
    rng = np.random.default_rng(0)
    sample = torch.from_numpy(rng.integers(0, 256, size=(checks, *shape), dtype=np.uint8))
    with torch.no_grad():
        try:
            expected = graph(sample).numpy()
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{run}: {model.info['method']} cannot take inputs of shape {shape} ({exc})") from None
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _trace(graph, sample[:2], tmp, opset)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(["features"], {"pixels": sample.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= tolerance:
            raise ValueError(
                f"{out}: onnxruntime's features differ from torch's by {diff:.2e} (above {tolerance:g}): not written"
            )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"out": str(out), "max_abs_diff": diff, "input_shape": ["batch", *shape],
            "feature_size": int(expected.shape[1]), "mode": mode}  # fmt: skip


def _output(method: str, mode: str | None) -> int:
    if method != "promptsg":
        if mode not in (None, "composed"):
            raise ValueError(f"--mode is PromptSG's ({', '.join(MODES)}); {method} has one feature")
        return 0
    if mode is not None and mode not in MODES:
        raise ValueError(f"PromptSG's mode is one of {', '.join(MODES)}, got {mode!r}")
    return MODES[mode or "composed"]


def _trace(graph: nn.Module, sample: torch.Tensor, path: Path, opset: int) -> None:
    """The TorchScript exporter's ONNX file of ``graph`` on ``sample``, with a dynamic batch."""
    with warnings.catch_warnings():
        # the tracer notes Python-side lengths of parameters (constants for this model); the
        # dynamic batch is checked by the caller, on 8 inputs where the export traced 2
        warnings.simplefilter("ignore")
        # attention's fused fast path (taken for frozen weights in eval mode) has no ONNX form
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            torch.onnx.export(
                graph, (sample,), str(path), input_names=["pixels"], output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}}, opset_version=opset, dynamo=False,
            )  # fmt: skip
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)

"""Benchmark: PromptSG's inference speed, composed and simplified, against the plain image encoder.

    python benchmarks/promptsg_speed.py [--backbone ViT-B-16] [--batch 16] [--repeat 5] [--device cpu]

Random weights (speed does not depend on them), 256x128 inputs. Reports images/s of the
plain CLIP image encoder, of PromptSG's simplified mode (text feature computed once) and
of its composed mode (a prompt per image through the text encoder), and each as a
fraction of the plain encoder's speed (the paper: 0.88x and 0.48x).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from reidmodels.methods.promptsg import PromptSG


def _rate(fn, x: torch.Tensor, repeat: int) -> float:
    fn(x)  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn(x)
    return repeat * x.shape[0] / (time.perf_counter() - start)


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = PromptSG.build({"num_classes": 751}, backbone=args.backbone, pretrained=None, image_size=(256, 128))
    model = model.to(device).eval()
    x = torch.randn(args.batch, 3, 256, 128, device=device)
    rates = {
        "plain encoder": _rate(lambda b: model.backbone.image_features(b), x, args.repeat),
        "simplified": _rate(lambda b: model.embed(b, simplified=True), x, args.repeat),
        "composed": _rate(lambda b: model.embed(b), x, args.repeat),
    }
    base = rates["plain encoder"]
    for name, rate in rates.items():
        print(f"{name:14s} {rate:8.1f} images/s  {rate / base:.2f}x")
    print(json.dumps({"device": str(device), "batch": args.batch, "images_per_s": rates}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

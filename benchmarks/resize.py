"""The loader's resize against PIL's (what the official pipelines use): largest pixel
difference of the OpenCV ``INTER_CUBIC`` resize we used before, and the time per crop.

    python benchmarks/resize.py

Crops are synthetic people (``reiddata.synthetic.render``) at real ReID sizes, resized to
256x128 (H x W): 128x64 and 256x128 (Market-1501's, upscaled or kept), 400x200 (MSMT17-
and aerial-sized, downscaled), 160x60.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from PIL import Image

from reiddata.synthetic import make_people, render

SIZES = ((64, 128), (128, 256), (200, 400), (60, 160))  # (width, height)
KERNELS = {
    "bicubic": (Image.Resampling.BICUBIC, cv2.INTER_CUBIC),
    "bilinear": (Image.Resampling.BILINEAR, cv2.INTER_LINEAR),
}


def main() -> None:
    people = make_people(20, 0, up_colours=("red", "blue", "black"), down_colours=("gray", "black"))
    rng = np.random.default_rng(0)
    for w, h in SIZES:
        crops = [np.asarray(render(p, view="ground", size=(w, h), rng=rng)) for p in people]
        for name, (pil, cv) in KERNELS.items():
            worst, mean = 0, []
            t_pil = t_cv = 0.0
            for crop in crops:
                t = time.perf_counter()
                a = np.asarray(Image.fromarray(crop).resize((128, 256), pil))
                t_pil += time.perf_counter() - t
                t = time.perf_counter()
                b = cv2.resize(crop, (128, 256), interpolation=cv)
                t_cv += time.perf_counter() - t
                diff = np.abs(a.astype(int) - b.astype(int))
                worst, mean = max(worst, int(diff.max())), mean + [float(diff.mean())]
            print(
                f"{h}x{w} -> 256x128 {name:8s}: largest difference {worst:3d} levels, mean {np.mean(mean):.2f}; "
                f"PIL {1e3 * t_pil / len(crops):.3f} ms, OpenCV {1e3 * t_cv / len(crops):.3f} ms per crop"
            )


if __name__ == "__main__":
    main()

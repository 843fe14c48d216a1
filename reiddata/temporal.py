"""Sparse temporal sampling: which frames of a tracklet a video ReID model sees.

Pure functions of (tracklet length, mode, clip length T, train/test, seed, epoch,
sample index): the same arguments always give the same frames, on any machine and in
any worker, so a run can be replayed. Only numpy is needed; nothing here reads data.

Modes (each returns a list of clips, each a list of frame indices in order):

- ``tsn`` (Wang et al., TSN): T equal segments (boundaries ``floor(i * n / T)``);
  train takes one random frame per segment, test each segment's middle frame
  ``floor((i + 0.5) * n / T)``.
- ``restricted`` (the G2A-VReID authors' rule): T blocks of ``n // T`` frames, the
  last absorbing the remainder; train takes one random frame per block, test each
  block's first frame.
- ``dense``: consecutive clips of T frames covering the whole tracklet; the last clip
  is padded by cycling over its own frames (the MARS evaluation loaders' rule).
  Used at test time; train and test give the same clips.
- ``all``: one clip of every frame, in order (T is not used).

A tracklet shorter than T (in every mode but ``all``) gives one clip of all its
frames followed by its last frame repeated up to T.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MODES", "sample_clips"]

MODES = ("tsn", "restricted", "dense", "all")


def _short(num_frames: int, length: int) -> list[int]:
    return list(range(num_frames)) + [num_frames - 1] * (length - num_frames)


def _tsn(n: int, length: int, train: bool, rng: np.random.Generator | None) -> list[int]:
    if not train:
        return [int((i + 0.5) * n / length) for i in range(length)]
    bounds = [i * n // length for i in range(length + 1)]
    return [int(rng.integers(bounds[i], bounds[i + 1])) for i in range(length)]  # type: ignore[union-attr]


def _restricted(n: int, length: int, train: bool, rng: np.random.Generator | None) -> list[int]:
    block = n // length
    starts = [i * block for i in range(length)]
    if not train:
        return starts
    ends = starts[1:] + [n]  # the last block absorbs the remainder
    return [int(rng.integers(s, e)) for s, e in zip(starts, ends)]  # type: ignore[union-attr]


def _dense(n: int, length: int) -> list[list[int]]:
    clips = [list(range(start, start + length)) for start in range(0, n - length + 1, length)]
    done = len(clips) * length
    if done < n:
        last = list(range(done, n))
        clips.append([last[i % len(last)] for i in range(length)])
    return clips


def sample_clips(
    num_frames: int,
    *,
    mode: str = "tsn",
    length: int = 8,
    train: bool,
    seed: int = 0,
    epoch: int = 0,
    index: int = 0,
) -> list[list[int]]:
    """Frame indices of the clips to decode from a tracklet of ``num_frames`` frames.

    ``index`` is the sample's position in the dataset (or any stable id): with
    ``seed`` and ``epoch`` it seeds the random choices of ``train`` sampling, so
    every epoch sees different frames and a rerun sees the same ones.
    """
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}: expected one of {', '.join(MODES)}")
    if num_frames < 1:
        raise ValueError(f"a tracklet needs at least one frame, got {num_frames}")
    if length < 1:
        raise ValueError(f"clip length must be at least 1, got {length}")
    if mode == "all":
        return [list(range(num_frames))]
    if num_frames < length:
        return [_short(num_frames, length)]
    if mode == "dense":
        return _dense(num_frames, length)
    rng = np.random.default_rng([seed, epoch, index]) if train else None
    pick = _tsn if mode == "tsn" else _restricted
    return [pick(num_frames, length, train, rng)]

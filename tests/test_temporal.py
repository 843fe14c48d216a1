"""Sparse temporal sampling: exact test-time indices, train-time rules, determinism."""

from __future__ import annotations

import pytest

from reiddata.temporal import sample_clips

T = 8

# Test-time clips for tracklets of 5, 8, 33 and 100 frames with T = 8, written down.
EXPECTED = {
    "tsn": {
        5: [[0, 1, 2, 3, 4, 4, 4, 4]],
        8: [[0, 1, 2, 3, 4, 5, 6, 7]],
        33: [[2, 6, 10, 14, 18, 22, 26, 30]],  # floor((i + 0.5) * 33 / 8)
        100: [[6, 18, 31, 43, 56, 68, 81, 93]],
    },
    "restricted": {
        5: [[0, 1, 2, 3, 4, 4, 4, 4]],
        8: [[0, 1, 2, 3, 4, 5, 6, 7]],
        33: [[0, 4, 8, 12, 16, 20, 24, 28]],  # blocks of 33 // 8 = 4, the last is 28..32
        100: [[0, 12, 24, 36, 48, 60, 72, 84]],  # blocks of 12, the last is 84..99
    },
    "dense": {
        5: [[0, 1, 2, 3, 4, 4, 4, 4]],
        8: [[0, 1, 2, 3, 4, 5, 6, 7]],
        33: [list(range(0, 8)), list(range(8, 16)), list(range(16, 24)), list(range(24, 32)), [32] * 8],
        100: [list(range(s, s + 8)) for s in range(0, 96, 8)] + [[96, 97, 98, 99, 96, 97, 98, 99]],
    },
    "all": {n: [list(range(n))] for n in (5, 8, 33, 100)},
}


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("length", [5, 8, 33, 100])
def test_test_time_indices_are_exact(mode, length):
    assert sample_clips(length, mode=mode, length=T, train=False) == EXPECTED[mode][length]


@pytest.mark.parametrize("length", [5, 8, 33, 100])
def test_train_tsn_takes_one_frame_per_equal_segment(length):
    for index in range(20):
        (clip,) = sample_clips(length, mode="tsn", length=T, train=True, seed=3, epoch=1, index=index)
        if length < T:
            assert clip == [0, 1, 2, 3, 4, 4, 4, 4]
            continue
        for i, frame in enumerate(clip):
            assert i * length // T <= frame < (i + 1) * length // T


@pytest.mark.parametrize("length", [8, 33, 100])
def test_train_restricted_blocks_end_with_the_remainder(length):
    block = length // T
    seen_last = set()
    for index in range(200):
        (clip,) = sample_clips(length, mode="restricted", length=T, train=True, seed=0, epoch=0, index=index)
        for i, frame in enumerate(clip[:-1]):
            assert i * block <= frame < (i + 1) * block
        assert (T - 1) * block <= clip[-1] < length
        seen_last.add(clip[-1])
    assert seen_last == set(range((T - 1) * block, length))  # the last block reaches the end


def test_train_sampling_is_deterministic_per_seed_epoch_and_index():
    def clip(**kw):
        return sample_clips(100, mode="tsn", length=T, train=True, **kw)

    assert clip(seed=1, epoch=2, index=3) == clip(seed=1, epoch=2, index=3)
    epochs = {tuple(clip(seed=1, epoch=e, index=3)[0]) for e in range(10)}
    indices = {tuple(clip(seed=1, epoch=2, index=i)[0]) for i in range(10)}
    assert len(epochs) == 10 and len(indices) == 10
    assert clip(seed=1, epoch=2, index=3) != clip(seed=2, epoch=2, index=3)
    # dense and all ignore randomness
    assert sample_clips(33, mode="dense", train=True, seed=9) == EXPECTED["dense"][33]


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="expected one of tsn, restricted, dense, all"):
        sample_clips(10, mode="random", train=True)
    with pytest.raises(ValueError, match="at least one frame"):
        sample_clips(0, train=False)
    with pytest.raises(ValueError, match="clip length must be at least 1"):
        sample_clips(10, length=0, train=False)

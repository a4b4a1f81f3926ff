"""Flicker rate and temporal smoothing on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.demo import DemoError, FlickerMeter, TemporalSmoother, flicker_rate


def test_flicker_rate_counts_changed_pixels():
    a = np.zeros((4, 5), np.uint8)
    b = a.copy()
    b[0, :3] = 2  # 3 of 20 pixels change
    assert flicker_rate(a, b) == pytest.approx(3 / 20)
    with pytest.raises(DemoError, match="different sizes"):
        flicker_rate(a, b[:2])


def test_meter_averages_over_consecutive_pairs():
    meter = FlickerMeter()
    masks = [np.zeros((2, 5), np.uint8) for _ in range(3)]
    masks[1][0, 0] = 1  # pair 0-1: 1 change; pair 1-2: the same pixel changes back, 1 change
    masks[2][1, :] = 3  # pair 1-2: 5 more
    assert meter.update(masks[0]) is None and meter.rate is None
    assert meter.update(masks[1]) == pytest.approx(1 / 10)
    assert meter.update(masks[2]) == pytest.approx(6 / 10)
    assert meter.rate == pytest.approx(7 / 20) and meter.pairs == 2


def test_smoother_is_a_majority_vote_with_ties_to_the_newest():
    smooth = TemporalSmoother(window=3)
    a, b, c = (np.full((1, 3), v, np.uint8) for v in (0, 1, 2))
    np.testing.assert_array_equal(smooth(a), a)
    np.testing.assert_array_equal(smooth(b), b)  # 0 and 1 tie: the newest wins
    np.testing.assert_array_equal(smooth(a), a)  # 0 twice of three
    # The window now holds b, a, c (the first a dropped out): a three-way tie goes to c.
    np.testing.assert_array_equal(smooth(c), c)


def test_smoother_window_drops_old_masks():
    smooth = TemporalSmoother(window=2)
    zero, one = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
    smooth(zero)
    smooth(zero)
    out = smooth(one)  # window [0, 1]: tie -> newest
    np.testing.assert_array_equal(out, one)
    assert TemporalSmoother(window=1)(one) is one


def test_smoothing_lowers_flicker_on_a_noisy_static_scene():
    rng = np.random.default_rng(0)
    scene = np.repeat(np.arange(4, dtype=np.uint8), 16).reshape(8, 8)
    raw, smoothed = FlickerMeter(), FlickerMeter()
    smooth = TemporalSmoother(window=5)
    for _ in range(60):
        noisy = scene.copy()
        flips = rng.random(scene.shape) < 0.1  # 10% of pixels take a random class each frame
        noisy[flips] = rng.integers(0, 4, int(flips.sum()))
        raw.update(noisy)
        smoothed.update(smooth(noisy))
    assert 0.08 < raw.rate < 0.2
    assert smoothed.rate < raw.rate / 4


def test_smoother_refuses_bad_settings_and_resets_on_a_new_size():
    with pytest.raises(DemoError, match="window"):
        TemporalSmoother(window=0)
    smooth = TemporalSmoother(window=3)
    smooth(np.zeros((2, 2), np.uint8))
    np.testing.assert_array_equal(smooth(np.ones((3, 3), np.uint8)), np.ones((3, 3), np.uint8))


def test_smoother_equals_a_per_pixel_mode_with_ties_to_the_newest():
    rng = np.random.default_rng(1)
    window, frames = 4, [rng.integers(0, 3, (5, 6), dtype=np.uint8) for _ in range(9)]
    smooth = TemporalSmoother(window)
    for t, mask in enumerate(frames):
        held = frames[max(0, t - window + 1) : t + 1]
        expected = np.empty_like(mask)
        for index in np.ndindex(mask.shape):
            votes = [m[index] for m in held]
            counts = {c: votes.count(c) for c in votes}
            top = max(counts.values())
            expected[index] = next(c for c in reversed(votes) if counts[c] == top)  # newest among the tied
        np.testing.assert_array_equal(smooth(mask), expected)

"""Velocity / acceleration errors, jitter and the Savitzky–Golay filter, by known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ddhpose.evaluation.metrics import mpjve
from ddhpose.evaluation.temporal import (
    acceleration_error,
    jitter,
    smooth_poses,
    velocity_error,
)


def _line(t_len: int, joints: int = 4, v=(0.01, -0.02, 0.005), start=None) -> np.ndarray:
    """Constant velocity v (unit per frame) for every joint: (T, J, 3)."""
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(joints, 3)) if start is None else start
    return x0[None] + np.arange(t_len)[:, None, None] * np.asarray(v)[None, None]


def test_constant_velocity_offset_gives_known_velocity_and_zero_acceleration_error():
    gt = _line(10)
    pred = _line(10, v=(0.04, -0.02, 0.005)) + 0.3  # velocity differs by 0.03 on x, shifted
    vel = velocity_error(pred, gt)
    acc = acceleration_error(pred, gt)
    assert vel.shape == (9, 4) and acc.shape == (8, 4)
    np.testing.assert_allclose(vel, 0.03, atol=1e-12)
    np.testing.assert_allclose(acc, 0.0, atol=1e-12)
    assert jitter(pred) == pytest.approx(0.0, abs=1e-12)


def test_quadratic_motion_has_the_known_acceleration():
    t = np.arange(7, dtype=float)
    gt = np.zeros((7, 2, 3))
    pred = gt.copy()
    pred[:, :, 1] = 0.5 * 0.004 * t[:, None] ** 2  # y = a t^2 / 2, a = 0.004 unit/frame^2
    np.testing.assert_allclose(acceleration_error(pred, gt), 0.004, atol=1e-12)
    assert jitter(pred) == pytest.approx(0.004)
    # the velocity error grows linearly: a (t + 1/2)
    np.testing.assert_allclose(velocity_error(pred, gt)[:, 0], 0.004 * (t[:-1] + 0.5))


def test_velocity_error_mean_is_metrics_mpjve():
    rng = np.random.default_rng(1)
    pred, gt = rng.normal(size=(2, 12, 17, 3))
    assert velocity_error(pred, gt).mean() == pytest.approx(float(mpjve(pred, gt)))


def test_short_sequences_and_bad_shapes():
    one = np.zeros((1, 3, 3))
    assert velocity_error(one, one).shape == (0, 3)
    assert acceleration_error(np.zeros((2, 3, 3)), np.zeros((2, 3, 3))).shape == (0, 3)
    assert jitter(np.zeros((2, 5, 3))) == 0.0
    with pytest.raises(ValueError, match="differ"):
        velocity_error(np.zeros((4, 3, 3)), np.zeros((5, 3, 3)))
    with pytest.raises(ValueError, match=r"\(T, J, 3\)"):
        acceleration_error(np.zeros((4, 3)), np.zeros((4, 3)))


def test_smoothing_keeps_quadratic_motion_and_damps_jitter():
    t = np.arange(30, dtype=float)
    clean = np.zeros((30, 5, 3))
    clean[..., 0] = (0.01 * t + 0.001 * t**2)[:, None]
    np.testing.assert_allclose(smooth_poses(clean, 9), clean, atol=1e-10)  # order 2 passes
    noisy = clean + np.random.default_rng(2).normal(scale=0.01, size=clean.shape)
    smoothed = smooth_poses(noisy, 9)
    assert smoothed.shape == noisy.shape
    assert jitter(smoothed) < 0.3 * jitter(noisy)
    assert np.abs(smoothed - clean).mean() < np.abs(noisy - clean).mean()


def test_smoothing_window_rules():
    x = np.random.default_rng(3).normal(size=(5, 2, 3)).astype(np.float32)
    for bad in (0, 1, 2, 4, 8, 3.5, True):
        with pytest.raises(ValueError, match="odd integer >= 3"):
            smooth_poses(x, bad)
    # T = 5 < window 9: shrunk to 5, order 2 -> a quadratic fit over the whole sequence
    out = smooth_poses(x, 9)
    assert out.dtype == np.float32 and out.shape == x.shape
    t = np.arange(5)
    coef = np.polyfit(t, x[:, 1, 2], 2)
    np.testing.assert_allclose(out[:, 1, 2], np.polyval(coef, t), atol=1e-5)
    # T = 4: the largest odd window is 3, order 2 -> exact interpolation, identity
    np.testing.assert_allclose(smooth_poses(x[:4], 9), x[:4], atol=1e-6)
    # T < 3: identity, a copy
    two = x[:2]
    out2 = smooth_poses(two, 9)
    np.testing.assert_array_equal(out2, two)
    assert out2 is not two
    assert smooth_poses(np.zeros((0, 2, 3)), 5).shape == (0, 2, 3)

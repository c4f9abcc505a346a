"""Metrics: hand-computed cases and invariances of P-MPJPE (Procrustes with scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddhpose.evaluation.metrics import (
    joint_errors,
    mpjpe,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    per_frame_mpjpe,
    per_joint_mpjpe,
    procrustes_align,
)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mpjpe_hand_computed_numpy_and_torch():
    pred = np.zeros((1, 2, 3))
    target = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # errors 5 and 1
    assert float(mpjpe(pred, target)) == pytest.approx(3.0)
    assert float(mpjpe(torch.tensor(pred), torch.tensor(target))) == pytest.approx(3.0)
    np.testing.assert_allclose(joint_errors(pred, target), [[5.0, 1.0]])
    np.testing.assert_allclose(per_frame_mpjpe(pred, target), [3.0])
    np.testing.assert_allclose(per_joint_mpjpe(pred, target), [5.0, 1.0])


def test_per_joint_and_per_frame_shapes():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 4, 17, 3)), rng.normal(size=(2, 4, 17, 3))
    assert per_frame_mpjpe(pred, target).shape == (2, 4)
    assert per_joint_mpjpe(pred, target).shape == (17,)
    assert float(per_joint_mpjpe(pred, target).mean()) == pytest.approx(float(mpjpe(pred, target)))


def test_mpjpe_is_differentiable_in_torch():
    pred = torch.zeros(1, 2, 3, requires_grad=True)
    target = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    mpjpe(pred, target).backward()
    # d/dp0 of (|p0 - t0| + |p1 - t1|) / 2 = (p0 - t0) / (2 |p0 - t0|) = (-3, -4, 0) / 10
    np.testing.assert_allclose(pred.grad.numpy()[0, 0], [-0.3, -0.4, 0.0], atol=1e-6)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="do not match"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_p_mpjpe_invariant_to_similarity_of_prediction(backend):
    rng = np.random.default_rng(1)
    target = rng.normal(size=(6, 17, 3))
    pred = target + 0.1 * rng.normal(size=target.shape)
    rot = _rotation(np.array([0.3, -1.0, 0.5]), 1.1)
    moved = 2.5 * pred @ rot.T + np.array([4.0, -2.0, 7.0])
    conv = (lambda x: x) if backend == "numpy" else torch.tensor
    base = float(p_mpjpe(conv(pred), conv(target)))
    assert base > 0.01
    assert float(p_mpjpe(conv(moved), conv(target))) == pytest.approx(base, rel=1e-9)
    # a similarity transform of the target itself aligns exactly
    exact = 0.5 * target @ rot.T - 3.0
    assert float(p_mpjpe(conv(exact), conv(target))) == pytest.approx(0.0, abs=1e-9)
    # and the aligned error never exceeds the raw one
    assert base <= float(mpjpe(conv(pred), conv(target)))


def test_p_mpjpe_reflection_is_not_undone():
    # A chiral labelled pose: a mirror image cannot be reached by rotation + positive scale.
    target = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    aligned = procrustes_align(mirrored, target)
    edges = aligned[0, 1:] - aligned[0, :1]
    assert np.linalg.det(edges) < 0  # orientation of the prediction is kept
    assert float(p_mpjpe(mirrored, target)) > 0.1
    t = torch.tensor
    assert float(p_mpjpe(t(mirrored), t(target))) == pytest.approx(
        float(p_mpjpe(mirrored, target)), rel=1e-9
    )


def test_p_mpjpe_planar_mirror_is_a_rotation():
    # For a planar pose a mirror image equals a 180° rotation: error 0 after alignment.
    target = np.array([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, -2.0, 0.0]]])
    mirrored = target * np.array([1.0, 1.0, -1.0])
    assert float(p_mpjpe(mirrored, target)) == pytest.approx(0.0, abs=1e-9)


def test_n_mpjpe_removes_scale_only():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(3, 17, 3))
    assert float(n_mpjpe(3.0 * target, target)) == pytest.approx(0.0, abs=1e-12)
    assert float(n_mpjpe(target + 1.0, target)) > 0.1


def test_mpjve_hand_computed():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(5, 17, 3))
    assert float(mpjve(target + 2.0, target)) == pytest.approx(0.0, abs=1e-12)
    drift = np.arange(5)[:, None, None] * np.array([0.0, 3.0, 4.0])  # velocity error 5 per joint
    assert float(mpjve(target + drift, target)) == pytest.approx(5.0)
    assert float(mpjve(torch.tensor(target + drift), torch.tensor(target))) == pytest.approx(5.0)

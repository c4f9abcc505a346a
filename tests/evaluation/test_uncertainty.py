"""joint_spread: known answers, and the same numbers as ``ddhpose infer``'s ``spread``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.evaluation.uncertainty import joint_spread
from ddhpose.inference.infer import infer
from ddhpose.model.ddhpose import DDHPose


def test_two_hypotheses_give_half_their_distance():
    hyp = np.zeros((2, 3, 3))  # (H, J, 3)
    hyp[1, 1] = [0.3, 0.4, 0.0]  # joint 1: 0.5 apart
    np.testing.assert_allclose(joint_spread(hyp), [0.0, 0.25, 0.0])


def test_leading_axes_units_and_one_hypothesis():
    rng = np.random.default_rng(0)
    hyp = rng.normal(size=(4, 6, 5, 17, 3))  # (T, K, H, J, 3)
    s = joint_spread(hyp)
    assert s.shape == (4, 6, 17)
    np.testing.assert_allclose(joint_spread(hyp * 1000.0), s * 1000.0)  # same unit out
    np.testing.assert_allclose(joint_spread(hyp + 7.0), s)  # translation-invariant
    assert np.all(joint_spread(hyp[:, :, :1]) == 0.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, J, 3\)"):
        joint_spread(np.zeros((17, 3)))


def test_equals_the_spread_that_infer_reports():
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()
    kp = np.random.default_rng(1).uniform(200, 800, size=(9, 17, 2))  # one window, no blending
    res = infer(model, kp, (1000, 1000), hypotheses=4, steps=1, aggregate="p_agg",
                keep_hypotheses=True, generator=torch.Generator().manual_seed(0))
    ours = joint_spread(res.hypotheses)  # (T, J); infer zeroes the kept root, not its spread
    assert ours.shape == res.spread.shape == (9, 17)
    np.testing.assert_allclose(ours[:, 1:], res.spread[:, 1:], rtol=1e-5, atol=1e-7)
    assert np.all(ours[:, 1:] > 0)

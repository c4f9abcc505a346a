"""predictions.npz keeps the per-joint spread over hypotheses at the last DDIM step: the same
numbers as joint_spread of the saved hypotheses, written back like the poses, read back, and
None for a file written before it existed."""

from __future__ import annotations

import numpy as np
import torch
from demo_config import demo_model

from ddhpose.evaluation.predict import load_predictions, predict_split, save_predictions
from ddhpose.evaluation.uncertainty import joint_spread
from ddhpose.io import read_npz
from ddhpose.model.ddhpose import DDHPose
from ddhpose.synthetic.smoke import synthetic_split


def _predict(hypotheses: int):
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()
    split = synthetic_split(sequences=2, frames=13, seed=4)  # 13 = 9 + an overlapping last clip
    pred = predict_split(model, split, hypotheses=hypotheses, steps=2, batch_clips=1,
                         save_hypotheses=True,
                         sequence_generator=lambda i: torch.Generator().manual_seed(i))
    return split, pred


def test_spread_is_joint_spread_of_the_last_step_hypotheses(tmp_path):
    split, pred = _predict(hypotheses=3)
    assert pred.spread.dtype == np.float32 and pred.spread.shape == (split.num_frames, 17)
    expected = joint_spread(pred.hypotheses[:, -1])  # (T, H, J, 3) -> (T, J), root zeroed
    np.testing.assert_allclose(pred.spread, expected, rtol=1e-5, atol=1e-7)
    assert np.all(pred.spread[:, 0] == 0) and np.all(pred.spread[:, 1:] > 0)
    assert not np.allclose(pred.spread, joint_spread(pred.hypotheses[:, 0]))  # not step 1
    path = save_predictions(tmp_path / "predictions.npz", pred)
    back = load_predictions(path, split)
    assert back.spread.dtype == np.float32
    np.testing.assert_array_equal(back.spread, pred.spread)


def test_one_hypothesis_has_zero_spread_and_old_files_load_without_it(tmp_path):
    split, pred = _predict(hypotheses=1)
    assert np.all(pred.spread == 0)
    path = save_predictions(tmp_path / "predictions.npz", pred)
    old = {k: v for k, v in read_npz(path, what="t").items() if k != "spread"}
    np.savez(tmp_path / "old.npz", **old)
    assert load_predictions(tmp_path / "old.npz", split).spread is None

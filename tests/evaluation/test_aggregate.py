"""The four aggregations: hand-built cases and parity with the reference fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddhpose.camera import project_to_2d
from ddhpose.evaluation.aggregate import (
    aggregate_batch,
    evaluate_batch,
    j_agg,
    j_best_oracle,
    p_agg,
    p_best_oracle,
    reproject,
    zero_root,
)

# --- hand-built cases (B=1, K=1, H=2, F=1, J=2, root = joint 0) ----------------------------------


def _toy():
    gt = np.array([[[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]])  # (1, 1, 2, 3)
    h0 = [[0.0, 0.0, 0.0], [1.0, 0.3, 0.0]]  # joint 1 off by 0.3
    h1 = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.1]]  # joint 1 off by 0.1
    pred = np.array([h0, h1])[None, None, :, None]  # (1, 1, 2, 1, 2, 3)
    return pred, gt


def test_oracles_and_mean_by_hand():
    pred, gt = _toy()
    poses, idx = j_best_oracle(pred, gt)
    assert poses.shape == (1, 1, 1, 2, 3)
    assert idx[0, 0, 0].tolist() == [0, 1]  # root: tie -> first minimum
    poses, best = p_best_oracle(pred, gt)
    assert best.tolist() == [1]
    np.testing.assert_allclose(poses[0, 0, 0, 1], [1.0, 0.0, 0.1])
    np.testing.assert_allclose(p_agg(pred)[0, 0, 0, 1], [1.0, 0.15, 0.05])


def test_errors_by_hand_in_metres_to_mm():
    pred, gt = _toy()
    traj = np.array([[[[0.0, 0.0, 5.0]]]])
    cam = np.array([1.0, 1.0, 0.0, 0.0, 0, 0, 0, 0, 0])
    # 2D input = projection of hypothesis 0 -> JPMA must pick h = 0 for joint 1
    x2d = project_to_2d(zero_root(pred, 0)[0, 0, 0].numpy() + traj[0], cam)[None]
    errs = evaluate_batch(pred, gt, traj, x2d, cam, protocol2=False)
    # per-joint means over J = 2 (root error 0 included), x1000
    assert errs["p1_j_best_oracle"][0] == pytest.approx(50.0)
    assert errs["p1_p_best_oracle"][0] == pytest.approx(50.0)
    assert errs["p1_p_agg"][0] == pytest.approx(1000 * np.hypot(0.15, 0.05) / 2)
    assert errs["p1_j_agg"][0] == pytest.approx(150.0)
    assert set(errs) == {"p1_j_best_oracle", "p1_p_best_oracle", "p1_p_agg", "p1_j_agg"}


def test_j_agg_pixel_intrinsics_picks_closest_reprojection_per_joint():
    # 3DHP-like: mm units, pixel intrinsics, root 14 of 17 joints.
    rng = np.random.default_rng(0)
    b, k, h, f, j = 2, 2, 3, 4, 17
    pred = rng.normal(scale=200.0, size=(b, k, h, f, j, 3))
    traj = np.zeros((b, f, 1, 3))
    traj[..., 2] = 4000.0
    cam = np.array([1500.0, 1500.0, 1017.4, 1043.0, 0, 0, 0, 0, 0], dtype=np.float32)
    choice = rng.integers(0, h, size=(b, k, f, j))
    rel = zero_root(pred, 14).numpy()
    chosen = np.take_along_axis(rel, choice[:, :, None, :, :, None], axis=2)[:, :, 0]
    x2d = project_to_2d(chosen[:, 0] + traj, cam)  # target from step 0 only
    poses, idx = j_agg(zero_root(pred, 14), traj, x2d, cam)
    assert poses.shape == (b, k, f, j, 3)
    expect = choice[:, 0].copy()
    expect[..., 14] = 0  # the root reprojects identically for every h -> first minimum
    np.testing.assert_array_equal(idx[:, 0].numpy(), expect)
    np.testing.assert_allclose(poses[:, 0].numpy(), chosen[:, 0], atol=1e-9)


def test_identical_hypotheses_give_identical_aggregations():
    rng = np.random.default_rng(1)
    one = rng.normal(size=(2, 2, 1, 5, 17, 3)).astype(np.float32)
    pred = np.repeat(one, 3, axis=2)
    gt = rng.normal(size=(2, 5, 17, 3)).astype(np.float32)
    traj = np.tile(np.array([0, 0, 5.0], np.float32), (2, 5, 1, 1))
    x2d = rng.normal(size=(2, 5, 17, 2)).astype(np.float32)
    cam = np.array([2.3, 2.3, 0.02, 0.0, -0.2, 0.25, 0.0, 0.001, -0.001], np.float32)
    res = aggregate_batch(pred, gt, traj, x2d, cam)
    for key in ("p_best_oracle", "j_best_oracle", "p_agg"):
        np.testing.assert_allclose(res.errors_mm[f"p1_{key}"], res.errors_mm["p1_j_agg"], rtol=1e-6)
        np.testing.assert_allclose(res.errors_mm[f"p2_{key}"], res.errors_mm["p2_j_agg"], rtol=1e-6)
    assert (res.j_agg_index == 0).all() and (res.p_best_index == 0).all()
    assert res.poses["j_agg"].shape == (2, 2, 5, 17, 3)
    assert (res.poses["p_agg"][..., 0, :] == 0).all()  # root zeroed


# --- parity with the reference outputs ------------------------------------------------------------


def _load(parity_dir, tag):
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    sample = torch.load(parity_dir / f"sample_{tag}.pt", weights_only=True)
    meta = json.loads((parity_dir / "meta.json").read_text())
    return inputs, sample, meta["sampling"][tag]["metrics_mm_per_step"]


@pytest.mark.parametrize("tag", ["H1_K1", "H3_K4"])
def test_metrics_match_reference(parity_dir, tag):
    inputs, sample, expected = _load(parity_dir, tag)
    errs = evaluate_batch(
        sample["pred"], inputs["inputs_3d"], inputs["traj"], inputs["inputs_2d"],
        inputs["cam_intrinsic"],
    )
    assert len(expected) == 8
    for key, values in expected.items():
        ours = errs[key.replace("_best", "_best_oracle")]
        assert ours.shape == (len(values),)
        np.testing.assert_allclose(ours, values, rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("tag", ["H1_K1", "H3_K4"])
def test_reprojection_matches_reference(parity_dir, tag):
    inputs, sample, _ = _load(parity_dir, tag)
    ours = reproject(zero_root(sample["pred"], 0), inputs["traj"], inputs["cam_intrinsic"])
    assert ours.shape == sample["reproj_2d"].shape
    assert (ours - sample["reproj_2d"]).abs().max().item() <= 1e-5


def test_3dhp_variant_uses_pixels_root_14_and_valid_frames():
    from ddhpose.camera import mpi3dhp_test_intrinsic_px, normalize_screen_coordinates
    from ddhpose.evaluation.aggregate import aggregate_batch_3dhp

    rng = np.random.default_rng(3)
    b, k, h, f, j = 1, 1, 2, 3, 17
    pred = rng.normal(scale=100.0, size=(b, k, h, f, j, 3)).astype(np.float32)
    pred[..., 14, :] = 0
    gt = pred[:, 0, 0].copy()  # hypothesis 0 is exact
    traj = np.tile(np.array([0.0, 0.0, 4000.0], np.float32), (b, f, 1, 1))
    cam, w, hh = mpi3dhp_test_intrinsic_px("TS5")
    x2d = normalize_screen_coordinates(project_to_2d(gt + traj, cam), w, hh)
    valid = np.array([[True, False, True]])
    res = aggregate_batch_3dhp(pred, gt, traj, x2d, "TS5", valid=valid)
    assert (res.j_agg_index == 0).all()
    assert res.frames == 2
    assert res.errors_mm["p1_j_agg"][0] == pytest.approx(0.0, abs=1e-3)
    assert res.p_best_index.tolist() == [0]
    assert res.errors_mm["p1_p_best_oracle"][0] == pytest.approx(0.0, abs=1e-3)
    # the mean pose is off by half of hypothesis 1's error; mm, valid frames 0 and 2 only
    e1 = np.linalg.norm(pred[0, 0, 1] - gt[0], axis=-1)[[0, 2]].mean()
    assert e1 > 10.0
    assert res.errors_mm["p1_p_agg"][0] == pytest.approx(e1 / 2, rel=1e-5)

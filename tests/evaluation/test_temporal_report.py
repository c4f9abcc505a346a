"""Temporal errors of a split by known answers: differences never cross a sequence boundary or
an invalid frame (3DHP), per group frame-weighted and overall the mean over groups, in mm;
the filter's effect; the CSVs, metrics.json keys and MLflow names of the evaluate stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ddhpose.evaluation.calibration import uncertainty_report
from ddhpose.evaluation.predict import SplitPredictions
from ddhpose.evaluation.temporal_report import (
    OVERALL,
    filter_effect,
    segments,
    temporal_dict,
    temporal_errors,
    temporal_metrics,
    temporal_report,
)
from ddhpose.io import json_text
from ddhpose.synthetic.smoke import synthetic_split


def _offset_by_sequence(split, velocity_mm):
    """Predictions = ground truth + a drift of ``velocity_mm[s]`` mm/frame along x in sequence s,
    restarting at 0 in each sequence (a jump at every boundary)."""
    pred = split.pose_3d.astype(np.float64).copy()
    for s in range(split.num_sequences):
        lo, n = int(split.seq_start[s]), int(split.seq_length[s])
        pred[lo:lo + n, :, 0] += np.arange(n)[:, None] * velocity_mm[s] / 1000.0
    return pred


def test_constant_drift_gives_its_velocity_and_no_acceleration_without_crossing_sequences():
    split = synthetic_split(sequences=4, frames=12, seed=0)  # actions Act0, Act1, Act0, Act1
    pred = _offset_by_sequence(split, [1.0, 2.0, 3.0, 6.0])
    table = temporal_errors(split, {"p_agg": pred[:, None]})  # (T, K=1, J, 3)
    rows = table.set_index("action")
    # every joint drifts: MPJVE = the drift; a difference across a boundary would add a jump
    assert rows.loc["Act0", "mpjve_mm"] == pytest.approx(2.0)  # sequences 0 and 2
    assert rows.loc["Act1", "mpjve_mm"] == pytest.approx(4.0)  # sequences 1 and 3
    assert rows.loc[OVERALL, "mpjve_mm"] == pytest.approx(3.0)
    np.testing.assert_allclose(table["accel_mm"], 0.0, atol=1e-9)
    assert list(table.columns) == ["action", "aggregation", "mpjve_mm", "accel_mm"]


def test_groups_are_frame_weighted_and_the_average_is_over_groups():
    split = synthetic_split(sequences=3, frames=10, seed=1)
    split.seq_action[:] = ["Walk 1", "Walk 2", "Sit"]  # groups Walk (2 sequences), Sit
    split.seq_length[:] = [10, 10, 10]
    pred = _offset_by_sequence(split, [1.0, 4.0, 10.0])
    rows = temporal_errors(split, {"j_agg": pred}).set_index("action")
    assert rows.loc["Walk", "mpjve_mm"] == pytest.approx(2.5)
    assert rows.loc["Sit", "mpjve_mm"] == pytest.approx(10.0)
    assert rows.loc[OVERALL, "mpjve_mm"] == pytest.approx((2.5 + 10.0) / 2)  # not 5.0


def test_3dhp_runs_of_valid_frames_only():
    split = synthetic_split("3dhp", sequences=2, frames=10, seed=2, invalid_every=4)
    # valid: frames 1-3, 5-7, 9 of each sequence -> runs of 3, 3, 1
    segs = segments(split)
    assert [(s.seq, s.start, s.stop) for s in segs] == [
        (0, 1, 4), (0, 5, 8), (0, 9, 10), (1, 11, 14), (1, 15, 18), (1, 19, 20)]
    assert {s.group for s in segs} == {"SYN0", "SYN1"}  # 3DHP groups are the sequences
    pred = split.pose_3d.astype(np.float64).copy()
    pred[~split.valid] += 5.0  # a huge error on every invalid frame: never seen
    pred[:, :, 1] += np.arange(split.num_frames)[:, None] * 0.002  # 2 mm/frame everywhere
    rows = temporal_errors(split, {"p_agg": pred}).set_index("action")
    np.testing.assert_allclose(rows["mpjve_mm"], 2.0)
    np.testing.assert_allclose(rows["accel_mm"], 0.0, atol=1e-9)


def test_short_groups_give_nan_and_json_null():
    split = synthetic_split(sequences=1, frames=2, seed=3)
    table = temporal_errors(split, {"p_agg": split.pose_3d})
    assert np.isnan(table.set_index("action").loc[OVERALL, "accel_mm"])
    d = temporal_dict(table)
    assert d["p_agg"]["accel_mm"] is None and d["p_agg"]["mpjve_mm"] == pytest.approx(0.0)
    json.loads(json_text(d))  # valid JSON (no NaN)
    assert "accel_p_agg_last" not in temporal_metrics(table)


def test_filter_removes_added_jitter_and_keeps_p1_honest():
    split = synthetic_split(sequences=2, frames=40, seed=4)
    t = np.arange(40)[:, None, None] / 40.0  # smooth ground truth: slow sinusoids per joint
    phase = np.random.default_rng(1).uniform(0, 6, size=(1, 17, 3))
    split.pose_3d[:] = np.tile(0.2 * np.sin(2 * np.pi * t + phase), (2, 1, 1))
    split.pose_3d[:, 0] = 0.0
    rng = np.random.default_rng(0)
    noisy = split.pose_3d + rng.normal(scale=0.01, size=split.pose_3d.shape)  # 10 mm jitter
    noisy[:, 0] = 0.0
    effect = filter_effect(split, {"p_agg": noisy, "j_agg": noisy, "p_best_oracle": noisy}, 9)
    assert list(effect["aggregation"]) == ["p_agg", "j_agg"]  # only the deployable ones
    row = effect.iloc[0]
    assert row.window == 9 and row.order == 2
    assert row.accel_mm_smoothed < 0.3 * row.accel_mm
    assert row.p1_mm_smoothed < row.p1_mm
    # P1 without the filter is the plain mean joint error of each frame once, in mm
    err = np.linalg.norm(noisy - split.pose_3d, axis=-1) * 1000.0
    assert row.p1_mm == pytest.approx(err.mean())


def _predictions(split, spread: bool) -> SplitPredictions:
    rng = np.random.default_rng(5)
    poses = {}
    for agg in ("p_best_oracle", "p_agg", "j_best_oracle", "j_agg"):
        p = split.pose_3d[:, None] + rng.normal(scale=0.02, size=(split.num_frames, 2, 17, 3))
        p[..., 0, :] = 0.0
        poses[agg] = p.astype(np.float32)
    err = np.linalg.norm(poses["p_agg"][:, -1] - split.pose_3d, axis=-1)
    return SplitPredictions(poses=poses, batch_seq=np.zeros(1, np.int64),
                            batch_frames=np.zeros(1, np.int64), batch_errors={},
                            spread=err.astype(np.float32) if spread else None)


def test_reports_write_the_tables_plot_and_keys(tmp_path):
    split = synthetic_split(sequences=2, frames=20, seed=6)
    pred = _predictions(split, spread=True)
    rep = temporal_report(split, pred.poses, tmp_path / "eval", smooth_window=5)
    assert set(rep.metrics) == {"temporal", "temporal_filter"}
    assert set(rep.metrics["temporal"]) == set(pred.poses)
    assert set(rep.metrics["temporal"]["j_agg"]["per_action"]) == {"Act0", "Act1"}
    assert rep.metrics["temporal_filter"]["window"] == 5
    csv = pd.read_csv(tmp_path / "eval/temporal.csv")
    assert list(csv.columns) == ["action", "aggregation", "mpjve_mm", "accel_mm"]
    assert len(csv) == 4 * 3  # two groups + Average, four aggregations
    assert (tmp_path / "eval/temporal_filter.csv").is_file()
    for agg in pred.poses:
        assert {f"mpjve_{agg}_last", f"accel_{agg}_last", f"mpjve_{agg}/Act0"} <= set(rep.mlflow)
    assert {"filter_p1_j_agg_raw", "filter_p1_j_agg_smoothed",
            "filter_accel_p_agg_smoothed"} <= set(rep.mlflow)
    assert "MPJVE" in rep.lines[0] and "temporal filter" in rep.lines[1]

    off = temporal_report(split, pred.poses, tmp_path / "eval2", smooth_window=0)
    assert "temporal_filter" not in off.metrics
    assert not (tmp_path / "eval2/temporal_filter.csv").exists()

    unc = uncertainty_report(split, pred, tmp_path / "eval", tmp_path / "plots")
    assert unc.metrics["uncertainty"]["p_agg"]["spearman"] == pytest.approx(1.0)
    assert (tmp_path / "plots/uncertainty_vs_error.png").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "eval/uncertainty.csv")
    assert list(table["aggregation"]) == list(pred.poses)
    assert "unc_spearman_within_joint_j_agg" in unc.mlflow


def test_old_predictions_without_spread_skip_calibration_in_one_line(tmp_path):
    split = synthetic_split(sequences=1, frames=12, seed=7)
    rep = uncertainty_report(split, _predictions(split, spread=False), tmp_path, tmp_path)
    assert rep.metrics == {} and rep.mlflow == {} and rep.files == []
    assert len(rep.lines) == 1 and "no 'spread'" in rep.lines[0]
    assert list(tmp_path.iterdir()) == []


def test_3dhp_calibration_leaves_out_root_14_and_invalid_frames(tmp_path):
    split = synthetic_split("3dhp", sequences=2, frames=20, seed=8, invalid_every=3)
    assert split.skeleton.root == 14
    pred = _predictions(split, spread=True)
    for arr in pred.poses.values():
        arr[..., 14, :] = 0.0
    err = np.linalg.norm(pred.poses["p_agg"][:, -1] - split.pose_3d, axis=-1)
    pred.spread = err.astype(np.float32)
    pred.spread[:, 14] = 1.0  # a root spread would be the most uncertain pair if counted
    rep = uncertainty_report(split, pred, tmp_path, tmp_path)
    r = rep.metrics["uncertainty"]["p_agg"]
    assert r["pairs"] == int(split.valid.sum()) * 16
    assert r["spearman"] == pytest.approx(1.0)
    assert r["all_mm"] == pytest.approx(np.delete(err[split.valid], 14, axis=1).mean() * 1000,
                                        rel=1e-5)

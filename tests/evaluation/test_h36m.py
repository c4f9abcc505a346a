"""Human3.6M protocol: frame weighting (overlap counted twice), action groups, tables.

(The clip cutting itself is tested in test_clips.py.)"""

from __future__ import annotations

import json

import numpy as np

from ddhpose.data.clips import sequence_eval_clips
from ddhpose.evaluation.h36m import ProtocolAccumulator, action_group, write_tables
from ddhpose.skeleton import H36M17


def test_action_group():
    assert action_group("Walking 1") == "Walking"
    assert action_group("SittingDown") == "SittingDown"
    assert action_group("WalkDog 2") == "WalkDog"


def test_frame_weighting_counts_overlap_twice():
    # One hypothesis whose error on frame t is t mm on one of the 17 joints (metres inside).
    n, f, j = 10, 4, 17
    gt_seq = np.zeros((n, j, 3))
    gt_seq[:, 0, 2] = 5.0  # root trajectory
    pred_err = np.arange(n) / 1000.0
    acc = ProtocolAccumulator(protocol2=False)
    traj = gt_seq[:, 0].copy()
    gt_seq[:, 0] = 0
    clips = sequence_eval_clips(np.zeros((n, j, 2)), gt_seq, f, H36M17, traj=traj)
    for lo in range(0, len(clips.starts), 2):  # batches of 2 clips
        sl = slice(lo, lo + 2)
        pred = clips.x3d[sl][:, None, None].copy()  # (b, 1, 1, F, J, 3)
        pred[:, 0, 0, :, 3, 0] += pred_err[clips.frame_index[sl]]
        acc.add("Walking 1", pred, clips.x3d[sl], clips.traj[sl][:, :, None], clips.x2d[sl],
                np.array([1.0] * 2 + [0] * 7))
    clip_frames = [0, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9]  # frames 6 and 7 twice
    expected = np.mean(clip_frames) / j
    table = acc.table()
    got = table.query("aggregation == 'j_agg' and protocol == 'P1'")["mm"].to_numpy()
    np.testing.assert_allclose(got, [expected])
    # a plain per-frame mean (no double counting) would differ
    assert abs(np.mean(np.arange(n)) / j - expected) > 1e-3


def test_add_errors_weighted_by_frames_and_grouped():
    acc = ProtocolAccumulator()
    acc.add_errors("Walking 1", {"p1_j_agg": np.array([10.0, 1.0])}, frames=8)
    acc.add_errors("Walking 2", {"p1_j_agg": np.array([40.0, 4.0])}, frames=4)
    acc.add_errors("Eating", {"p1_j_agg": np.array([100.0, 7.0])}, frames=1000)
    per = acc.per_action()
    assert set(per) == {"Walking", "Eating"}
    np.testing.assert_allclose(per["Walking"]["p1_j_agg"], [20.0, 2.0])
    summary = acc.summary()
    assert summary["step"].tolist() == [1, 2]
    np.testing.assert_allclose(summary["mm"], [60.0, 4.5])  # unweighted over groups
    assert summary["actions"].tolist() == [2, 2]


def test_table_labels_oracles_and_writes(tmp_path):
    acc = ProtocolAccumulator()
    errs = {f"{p}_{a}": np.array([1.0, 2.0, 3.0])
            for p in ("p1", "p2") for a in ("j_best_oracle", "p_best_oracle", "p_agg", "j_agg")}
    acc.add_errors("Phoning", errs, frames=3)
    table = acc.table()
    assert list(table.columns) == ["action", "aggregation", "protocol", "step", "mm", "oracle"]
    assert len(table) == 8 * 3
    oracle = table.groupby("aggregation")["oracle"].first().to_dict()
    assert oracle == {"j_best_oracle": True, "p_best_oracle": True, "p_agg": False,
                      "j_agg": False}
    paths = write_tables(table, tmp_path)
    assert {p.name for p in paths.values()} == {"per_action.csv", "per_step.csv", "metrics.json"}
    metrics = json.loads(paths["json"].read_text())
    assert metrics["headline"]["p1_j_agg"] == 3.0
    assert metrics["per_step"]["p2_p_best_oracle"] == [1.0, 2.0, 3.0]
    assert "p1_j_agg" not in metrics["oracle"] and "p1_j_best_oracle" in metrics["oracle"]

"""MPI-INF-3DHP evaluator: hand-derived scores, the official MATLAB tables, .mat export, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from ddhpose.evaluation.export import (
    from_mat_layout,
    read_inference,
    to_mat_layout,
    write_inference_mats,
)
from ddhpose.evaluation.mpi3dhp import (
    ACTIVITIES,
    AUC_THRESHOLDS_MM,
    evaluate_prediction,
    evaluate_step,
    pck_curve,
    read_official_csv,
    score_errors,
    write_step_csvs,
)


def _annotations(n=6, seed=0):
    rng = np.random.default_rng(seed)
    annot3 = rng.normal(scale=300.0, size=(n, 17, 3)) + np.array([0, 0, 4000.0])
    valid = np.ones(n, bool)
    valid[1] = False
    activity = np.array([1, 1, 3, 3, 3, 7])[:n]
    return {"annot3": annot3, "valid": valid, "activity": activity}


def _root_relative(a):
    return a - a[:, 14:15]


def test_perfect_prediction():
    ann = _annotations()
    res = evaluate_step({"TS2": _root_relative(ann["annot3"])}, {"TS2": ann})
    row = res.sequences["TestSeq1"]
    assert res.sequence_names == {"TestSeq1": "TS2"}
    assert row.frames == 5
    np.testing.assert_allclose(row.mpjpe, 0.0, atol=1e-9)
    assert row.pck_total == 100.0 and (row.pck == 100.0).all()
    # strict "<" at threshold 0 keeps the first of the 31 curve points at 0: AUC = 100·30/31
    assert row.auc_total == pytest.approx(100.0 * 30 / 31)
    np.testing.assert_allclose(row.auc, 100.0 * 30 / 31)


def test_constant_offset_on_one_joint_hand_derived():
    ann = _annotations()
    pred = _root_relative(ann["annot3"])
    pred[:, 6, 0] += 100.0  # left elbow, 100 mm off on every frame
    pred[1] += 1e6  # the invalid frame must not count
    row = evaluate_step({"TS1": pred}, {"TS1": ann}).sequences["TestSeq1"]
    expected_mpjpe = np.zeros(17)
    expected_mpjpe[6] = 100.0
    np.testing.assert_allclose(row.mpjpe, expected_mpjpe, atol=1e-9)
    assert row.average == pytest.approx(100.0 / 17)
    assert row.pck_total == 100.0  # 100 < 150
    # error 100 is below the thresholds 105..150: 10 of 31 curve points
    elbow = 100.0 * (30 + 10) / 62
    np.testing.assert_allclose(row.auc, [100 * 30 / 31] * 3 + [elbow] + [100 * 30 / 31] * 4)
    assert row.auc_total == pytest.approx(100.0 * (13 * 30 + 10) / (14 * 31))


def test_pck_threshold_is_strict_and_groups_weighted():
    errors = np.zeros((4, 17))
    errors[:, 0] = 150.0  # head exactly at the threshold: not correct
    errors[:2, 2] = 200.0  # right shoulder wrong on half the frames
    row = score_errors(errors)
    assert row.pck[0] == 0.0
    assert row.pck[2] == pytest.approx(75.0)  # Shou = joints 2 and 5: 6 of 8 correct
    assert row.pck_total == pytest.approx(100.0 * (56 - 4 - 2) / 56)
    assert row.mpjpe[16] == 0.0 and row.mpjpe[0] == 150.0


def test_pck_curve_is_non_decreasing():
    errors = np.random.default_rng(1).gamma(2.0, 40.0, size=(50, 17))
    curve = pck_curve(errors)
    assert curve.shape == AUC_THRESHOLDS_MM.shape == (31,)
    assert curve[0] == 0.0 and np.all(np.diff(curve) >= 0)


def test_activity_rows_nan_for_absent_activities():
    ann = _annotations()
    res = evaluate_step({"TS1": _root_relative(ann["annot3"]) + 10.0}, {"TS1": ann})
    assert list(res.activities) == [*ACTIVITIES, "All"]
    assert np.isnan(res.activities["Exercising"].average)
    assert np.isnan(res.activities["Exercising"].pck_total)
    assert res.activities["Standing/Walking"].frames == 1  # frame 1 is invalid
    assert res.activities["Sitting"].frames == 3
    assert res.activities["All"].frames == 5
    assert res.activities["All"].average == pytest.approx(res.sequences["TestSeq1"].average)


def _compare_csv(ours_path, ref_path):
    ours, ref = read_official_csv(ours_path), read_official_csv(ref_path)
    assert set(ours) == set(ref) == {"mpjpe", "pck", "auc"}
    checked = 0
    for block, rows in ref.items():
        assert list(ours[block]) == list(rows)
        for row, cols in rows.items():
            assert list(ours[block][row]) == list(cols)
            for col, value in cols.items():
                mine = ours[block][row][col]
                if np.isnan(value):
                    assert np.isnan(mine), (block, row, col)
                else:  # 10 significant digits printed
                    assert mine == pytest.approx(value, rel=6e-10, abs=1e-12), (block, row, col)
                checked += 1
    return checked


def test_official_tables_reproduced(mpi3dhp_fixture_dir, tmp_path):
    from ddhpose.data.mpi3dhp import load_test_annotations

    official = mpi3dhp_fixture_dir / "official_eval_TS5"
    pred = read_inference(official / "inference_data_J_Agg.mat")
    assert pred["TS5"].shape == (3, 17, 320, 2)
    steps = evaluate_prediction(pred, load_test_annotations(mpi3dhp_fixture_dir))
    assert len(steps) == 2
    seq_csv, act_csv = write_step_csvs(steps[0], tmp_path, "J_Agg", 1)
    assert seq_csv.name == "mpii_3dhp_evaluation_sequencewise_ori_J_Agg_t1.csv"
    assert seq_csv.read_text().splitlines()[0].startswith("seq_table1,seq_table2,")
    assert act_csv.read_text().splitlines()[0].endswith(",activity_table19")
    assert _compare_csv(seq_csv, official / "official_sequencewise.csv") == 18 + 9 + 9
    assert _compare_csv(act_csv, official / "official_activitywise.csv") == 8 * (18 + 9 + 9)


def test_mat_export_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    poses = {agg: {"TS1": rng.normal(size=(7, 3, 17, 3)), "TS6": rng.normal(size=(4, 3, 17, 3))}
             for agg in ("p_best_oracle", "p_agg", "j_best_oracle", "J_Agg")}
    paths = write_inference_mats(tmp_path, poses)
    assert sorted(p.name for p in paths.values()) == [
        "inference_data_J_Agg.mat", "inference_data_J_Best.mat", "inference_data_P_Agg.mat",
        "inference_data_P_Best.mat"]
    back = read_inference(paths["p_agg"])
    assert list(back) == ["TS1", "TS6"]
    assert back["TS1"].shape == (3, 17, 7, 3) and back["TS1"].dtype == np.float64
    np.testing.assert_array_equal(from_mat_layout(back["TS6"]), poses["p_agg"]["TS6"])
    # layout: (xyz, joint, frame, step)
    assert back["TS1"][2, 5, 4, 1] == poses["p_agg"]["TS1"][4, 1, 5, 2]
    np.savez(tmp_path / "pred.npz", TS1=to_mat_layout(poses["p_agg"]["TS1"]))
    np.testing.assert_array_equal(read_inference(tmp_path / "pred.npz")["TS1"], back["TS1"])


def test_mat_export_rejects_bad_arrays(tmp_path):
    from ddhpose.errors import DataError

    np.savez(tmp_path / "bad.npz", TS1=np.zeros((3, 16, 5, 1)))
    with pytest.raises(DataError, match=r"bad\.npz: variable TS1: expected shape"):
        read_inference(tmp_path / "bad.npz")
    np.savez(tmp_path / "none.npz", foo=np.zeros(3))
    with pytest.raises(DataError, match=r"no TS1\.\.TS6"):
        read_inference(tmp_path / "none.npz")


def test_cli_runs_on_fixture(mpi3dhp_fixture_dir, tmp_path, capsys):
    from ddhpose import cli

    try:
        cli.build_parser()
    except ModuleNotFoundError as exc:  # another engineer's subcommand not written yet
        pytest.skip(f"ddhpose CLI cannot be built yet: {exc}")
    pred = mpi3dhp_fixture_dir / "official_eval_TS5" / "inference_data_J_Agg.mat"
    rc = cli.main(["evaluate-3dhp", "--pred", str(pred), "--annotations",
                   str(mpi3dhp_fixture_dir), "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "J_Agg" in out and "53.60" in out and "99.61" in out and "62.16" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {"summary_3dhp.json", "evaluation_3dhp.csv",
            "mpii_3dhp_evaluation_sequencewise_ori_J_Agg_t2.csv"} <= names
    rc = cli.main(["evaluate-3dhp", "--pred", str(tmp_path / "absent.mat"), "--annotations",
                   str(mpi3dhp_fixture_dir), "--out", str(tmp_path)])
    assert rc == 2

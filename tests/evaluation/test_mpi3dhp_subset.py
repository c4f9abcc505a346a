"""``ddhpose evaluate-3dhp`` says so when a prediction lacks annotated sequences."""

from __future__ import annotations

import json

import numpy as np
import scipy.io

from ddhpose.cli import main
from ddhpose.evaluation.export import to_mat_layout


def _annot_dir(root, names, n=6):
    rng = np.random.default_rng(0)
    poses = {}
    for ts in names:
        annot3 = rng.normal(scale=300.0, size=(n, 17, 3)) + np.array([0, 0, 4000.0])
        (root / ts).mkdir(parents=True)
        arrays = {"annot2": rng.uniform(0, 2000, (n, 1, 17, 2)), "annot3": annot3[:, None],
                  "univ_annot3": annot3[:, None], "valid_frame": np.ones((n, 1)),
                  "activity_annotation": np.full((n, 1), 3.0)}
        # MATLAB order: the reader reverses the axes of what scipy stores
        scipy.io.savemat(root / ts / "annot_data.mat", {k: v.T for k, v in arrays.items()})
        poses[ts] = annot3
    return poses


def test_missing_sequences_are_warned_and_recorded(tmp_path, capsys):
    poses = _annot_dir(tmp_path / "ann", ["TS1", "TS2", "TS5"])
    pred = tmp_path / "inference_data_P_Agg.npz"
    np.savez(pred, TS2=to_mat_layout(poses["TS2"][:, None]))  # (N, K=1, 17, 3) -> mat layout
    rc = main(["evaluate-3dhp", "--pred", str(pred), "--annotations", str(tmp_path / "ann"),
               "--out", str(tmp_path / "out")])
    assert rc == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("ddhpose evaluate-3dhp: warning: ")
    assert "lacks TS1, TS5" in warnings[0] and "over TS2 only" in warnings[0]
    summary = json.loads((tmp_path / "out" / "summary_3dhp.json").read_text())
    assert summary["aggregations"]["P_Agg"]["missing_sequences"] == ["TS1", "TS5"]


def test_a_complete_prediction_gives_no_warning(tmp_path, capsys):
    poses = _annot_dir(tmp_path / "ann", ["TS1"])
    pred = tmp_path / "inference_data_P_Agg.npz"
    np.savez(pred, TS1=to_mat_layout(poses["TS1"][:, None]))
    assert main(["evaluate-3dhp", "--pred", str(pred), "--annotations", str(tmp_path / "ann"),
                 "--out", str(tmp_path / "out")]) == 0
    assert "warning" not in capsys.readouterr().err

"""Stage ``export_mat``: the four aggregations as ``reports/export/inference_data_<agg>.mat``.

MPI-INF-3DHP: variables ``TS1..TS6`` (3, 17, N, K) mm root-relative — the official MATLAB
evaluation script runs on them unchanged (docs/model.md "The .mat export"). Human3.6M: the same
layout with one variable per sequence (``S9_Walking_1_cam0``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddhpose.data.processed import load_split
from ddhpose.evaluation.aggregate import AGGREGATIONS
from ddhpose.evaluation.export import inference_mat_name, write_inference_mats, write_sequences_mat
from ddhpose.evaluation.predict import load_predictions
from ddhpose.io import probe_writable
from ddhpose.project import ProjectPaths

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    probe_writable(paths.export)  # a read-only reports/ fails before the work
    test = load_split(paths.split("test"))
    pred = load_predictions(paths.predictions / "predictions.npz", test)
    per_agg: dict[str, dict[str, Any]] = {a: {} for a in AGGREGATIONS}
    for seq in test.sequences():
        lo = int(test.seq_start[seq.index])
        for agg in AGGREGATIONS:
            # mm, scaled in float64 as the evaluate stage scores them: the same numbers
            pose = pred.poses[agg][lo:lo + seq.num_frames].astype(np.float64)
            per_agg[agg][seq.name] = pose * 1000.0
    if test.dataset == "3dhp":
        written = list(write_inference_mats(paths.export, per_agg).values())
    else:
        written = [write_sequences_mat(paths.export / inference_mat_name(agg), seqs)
                   for agg, seqs in per_agg.items()]
    for path in written:
        tracker.log_artifact(path, "export")
    print(f"export_mat: {len(written)} files -> {paths.export}")

"""Turn saved predictions into the protocol tables (docs/model.md "Evaluation protocols") and a
mean-pose baseline. Pure functions over a processed split and :class:`SplitPredictions`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddhpose.data.processed import ProcessedSplit
from ddhpose.evaluation.aggregate import AGGREGATIONS, ORACLE
from ddhpose.evaluation.export import AGGREGATION_TO_MAT
from ddhpose.evaluation.h36m import ProtocolAccumulator, action_group, summarize
from ddhpose.evaluation.mpi3dhp import (
    AUC_THRESHOLDS_MM,
    evaluate_step,
    pck_curve,
    per_joint_errors,
    tidy_frame,
    write_step_csvs,
)
from ddhpose.evaluation.predict import SplitPredictions

# 3DHP evaluator joint groups use these 14 joints (pelvis, spine, head excluded).
_PCK_JOINTS_3DHP = list(range(14))


@dataclass
class EvalTables:
    """``table``: tidy rows (action, aggregation, protocol, step, mm, oracle) — for 3DHP the
    "action" is the activity (or "All") and only P1 exists; ``summary``: the headline per
    aggregation/protocol/step; ``extra``: dataset-specific results (3DHP PCK/AUC tables)."""

    table: pd.DataFrame
    summary: pd.DataFrame
    extra: dict[str, Any]


def h36m_tables(split: ProcessedSplit, pred: SplitPredictions) -> EvalTables:
    """Per-action, frame-weighted batch errors -> tables; headline = mean over action groups."""
    acc = ProtocolAccumulator()
    actions = split.seq_action
    for i, seq in enumerate(pred.batch_seq):
        errors = {key: err[i] for key, err in pred.batch_errors.items()}
        acc.add_errors(str(actions[seq]), errors, int(pred.batch_frames[i]))
    table = acc.table()
    return EvalTables(table=table, summary=summarize(table), extra={})


def _annotations_3dhp(split: ProcessedSplit) -> dict[str, dict[str, np.ndarray]]:
    return {
        seq.name: {"annot3": seq.pose_3d.astype(np.float64) * 1000.0, "valid": seq.valid,
                   "activity": seq.activity.astype(np.int64)}
        for seq in split.sequences()
    }


def mpi3dhp_tables(split: ProcessedSplit, pred: SplitPredictions, out_dir: Path) -> EvalTables:
    """Score every aggregation and step like the official MATLAB scripts; write their CSVs."""
    ann = _annotations_3dhp(split)
    rows, tidy, curves = [], [], {}
    for agg in AGGREGATIONS:
        poses_mm = pred.poses[agg].astype(np.float64) * 1000.0  # (T, K, J, 3)
        for k in range(pred.steps):
            per_seq = {seq.name: poses_mm[int(split.seq_start[seq.index]):
                                          int(split.seq_start[seq.index]) + seq.num_frames, k]
                       for seq in split.sequences()}
            result = evaluate_step(per_seq, ann)
            write_step_csvs(result, out_dir, AGGREGATION_TO_MAT[agg], k + 1)
            tidy.append(tidy_frame(result, agg, k + 1, ORACLE[agg]))
            head = result.headline()
            for name, scores in result.activities.items():
                rows.append({"action": name, "aggregation": agg, "protocol": "P1",
                             "step": k + 1, "mm": scores.average, "oracle": ORACLE[agg],
                             "pck": scores.pck_total, "auc": scores.auc_total})
            rows.append({"action": "_sequence_mean", "aggregation": agg, "protocol": "P1",
                         "step": k + 1, "mm": head["mpjpe_mm"], "oracle": ORACLE[agg],
                         "pck": head["pck"], "auc": head["auc"]})
            if k == pred.steps - 1:
                errs = np.concatenate([
                    per_joint_errors(per_seq[s][ann[s]["valid"]], ann[s]["annot3"][ann[s]["valid"]])
                    for s in per_seq])
                curves[agg] = pck_curve(errs[:, _PCK_JOINTS_3DHP]).tolist()
    table = pd.DataFrame(rows)
    seq_mean = table[table["action"] == "_sequence_mean"]
    summary = seq_mean.drop(columns=["action"]).reset_index(drop=True)
    table = table[table["action"] != "_sequence_mean"].reset_index(drop=True)
    return EvalTables(table=table, summary=summary, extra={
        "tidy": pd.concat(tidy, ignore_index=True), "pck_curves": curves,
        "thresholds_mm": list(map(float, AUC_THRESHOLDS_MM)),
    })


def mean_pose_baseline(train: ProcessedSplit, test: ProcessedSplit) -> dict[str, float]:
    """MPJPE (mm) of always predicting the mean training pose (root-relative).

    Averaged like the headline: per action group (frame-weighted) then unweighted over groups
    for Human3.6M; per sequence over valid frames then unweighted over sequences for 3DHP.
    """
    mean_pose = train.pose_3d.astype(np.float64).mean(axis=0)  # (J, 3)
    err = np.linalg.norm(test.pose_3d.astype(np.float64) - mean_pose, axis=-1).mean(-1) * 1000
    groups: dict[str, list[float]] = {}
    weights: dict[str, list[int]] = {}
    for seq in test.sequences():
        lo = int(test.seq_start[seq.index])
        e = err[lo:lo + seq.num_frames][seq.valid]
        key = action_group(seq.action) if test.dataset == "h36m" else seq.name
        groups.setdefault(key, []).append(float(e.sum()))
        weights.setdefault(key, []).append(int(e.size))
    per_group = [sum(groups[g]) / max(1, sum(weights[g])) for g in groups]
    return {"p1_mm": float(np.mean(per_group)), "groups": len(per_group)}


def headline(summary: pd.DataFrame, aggregation: str) -> dict[str, Any]:
    """The last-step numbers of one aggregation: ``{"p1_mm", ["p2_mm", "pck", "auc"]}``."""
    name = aggregation
    rows = summary[summary["aggregation"] == name]
    last = rows[rows["step"] == rows["step"].max()]
    out: dict[str, Any] = {"aggregation": name, "oracle": ORACLE.get(name, False),
                           "step": int(last["step"].max())}
    for _, r in last.iterrows():
        out[f"{str(r['protocol']).lower()}_mm"] = float(r["mm"])
        for extra in ("pck", "auc"):
            if extra in r and pd.notna(r[extra]):
                out[extra] = float(r[extra])
    return out


def per_step_dict(summary: pd.DataFrame) -> dict[str, list[float]]:
    """``{"p1_j_agg": [mm per step], ...}`` from a summary frame."""
    out: dict[str, list[float]] = {}
    for (proto, agg), grp in summary.groupby(["protocol", "aggregation"], sort=False):
        out[f"{str(proto).lower()}_{agg}"] = grp.sort_values("step")["mm"].astype(float).tolist()
    return out

"""The MPI-INF-3DHP evaluator: a Python port of the official MATLAB scripts
(docs/model.md "MPI-INF-3DHP PCK/AUC/MPJPE").

For each test sequence the ground truth ``annot3`` is made root-relative (pelvis = 0-based joint
14), the prediction (root-relative, mm) is compared on the valid frames with the per-joint
Euclidean distance, and the errors are summarised as

- MPJPE per joint (17 joints) and ``Average`` = mean of the 17 per-joint means (pelvis included);
- PCK@150 mm (strict ``<``) per joint group (8 groups, 14 joints) and ``Total`` (joint-weighted);
- AUC = 100 · mean of the PCK curve over thresholds 0:5:150 mm, per group and ``Total``.

Rows: ``TestSeq<i>`` per evaluated sequence (i = position among the evaluated sequences) and
per activity (7 activities + ``All``; NaN where an activity has no frame). Unlike the official
script (step 1 only), every DDIM step is scored. Headline = unweighted mean over sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddhpose.errors import DataError
from ddhpose.io import atomic_open
from ddhpose.skeleton import MPI3DHP17

ROOT = 14
JOINT_NAMES = MPI3DHP17.joint_names
GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Head", (0,)), ("Neck", (1,)), ("Shou", (2, 5)), ("Elbow", (3, 6)), ("Wrist", (4, 7)),
    ("Hip", (8, 11)), ("Knee", (9, 12)), ("Ankle", (10, 13)),
)
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = np.arange(0.0, 151.0, 5.0)  # 31 values, 0..150
ACTIVITIES = (
    "Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor", "Sports",
    "Miscellaneous",
)
N_COLUMNS = 19


@dataclass(frozen=True)
class Scores:
    """One table row. NaN everywhere when ``frames`` is 0.

    Attributes:
        mpjpe: (17,) per-joint MPJPE in mm; average: their mean.
        pck: (8,) per-group PCK@150 in %; pck_total: joint-weighted total.
        auc: (8,) per-group AUC in %; auc_total: AUC of the joint-weighted total curve.
        frames: number of scored frames.
    """

    mpjpe: np.ndarray
    average: float
    pck: np.ndarray
    pck_total: float
    auc: np.ndarray
    auc_total: float
    frames: int


def root_relative(poses: Any, root: int = ROOT) -> np.ndarray:
    """(N, 17, 3) -> the same minus joint ``root`` (float64)."""
    p = np.asarray(poses, dtype=np.float64)
    return p - p[:, root : root + 1]


def per_joint_errors(pred: Any, gt: Any, root: int = ROOT) -> np.ndarray:
    """Euclidean errors (N, 17) mm of a root-relative prediction against ``annot3``.

    The ground truth is made root-relative here; the prediction is used as given, as the
    official script does.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = root_relative(gt, root)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return np.linalg.norm(pred - gt, axis=-1)


def pck_curve(errors: Any, thresholds: Any = AUC_THRESHOLDS_MM) -> np.ndarray:
    """Fraction (not %) of errors strictly below each threshold: (..., M) errors -> (T,)."""
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    if e.size == 0:
        return np.full(len(thresholds), np.nan)
    return (e[None, :] < np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def score_errors(errors: Any) -> Scores:
    """Summarise per-joint errors (N, 17) mm of the scored frames into one table row."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != len(JOINT_NAMES):
        raise ValueError(f"expected (N, 17) errors, got {e.shape}")
    n = e.shape[0]
    if n == 0:
        nan8 = np.full(len(GROUPS), np.nan)
        return Scores(np.full(17, np.nan), np.nan, nan8, np.nan, nan8.copy(), np.nan, 0)
    mpjpe = e.mean(axis=0)
    pck, auc = [], []
    for _, joints in GROUPS:
        sub = e[:, list(joints)]
        pck.append(100.0 * (sub < PCK_THRESHOLD_MM).mean())
        auc.append(100.0 * pck_curve(sub).mean())
    all_joints = [j for _, joints in GROUPS for j in joints]
    sub = e[:, all_joints]
    return Scores(
        mpjpe=mpjpe,
        average=float(mpjpe.mean()),
        pck=np.asarray(pck),
        pck_total=float(100.0 * (sub < PCK_THRESHOLD_MM).mean()),
        auc=np.asarray(auc),
        auc_total=float(100.0 * pck_curve(sub).mean()),
        frames=n,
    )


@dataclass(frozen=True)
class StepResult:
    """Sequence-wise and activity-wise rows of one aggregation at one step."""

    sequences: dict[str, Scores]  # "TestSeq1" -> row
    sequence_names: dict[str, str]  # "TestSeq1" -> "TS5"
    activities: dict[str, Scores]  # activity name or "All" -> row

    def headline(self) -> dict[str, float]:
        """Unweighted means over sequences: ``mpjpe_mm``, ``pck``, ``auc``."""
        rows = list(self.sequences.values())
        return {
            "mpjpe_mm": float(np.mean([r.average for r in rows])),
            "pck": float(np.mean([r.pck_total for r in rows])),
            "auc": float(np.mean([r.auc_total for r in rows])),
        }


def evaluate_step(
    preds: dict[str, Any], annotations: dict[str, dict[str, np.ndarray]]
) -> StepResult:
    """Score one step: ``preds`` maps "TS<i>" -> (N, 17, 3) mm root-relative (every frame).

    Sequences are evaluated in TS order; ``TestSeq<i>`` numbers them by position.
    """
    seqs = sorted(preds, key=lambda s: int(s[2:]))
    rows, names, per_seq_err, per_seq_act = {}, {}, [], []
    for i, ts in enumerate(seqs, start=1):
        ann = annotations[ts]
        pred = np.asarray(preds[ts], dtype=np.float64)
        if pred.shape[0] != ann["annot3"].shape[0]:
            raise ValueError(
                f"{ts}: prediction has {pred.shape[0]} frames, annotations {ann['annot3'].shape[0]}"
            )
        valid = np.asarray(ann["valid"], bool)
        err = per_joint_errors(pred[valid], ann["annot3"][valid])
        rows[f"TestSeq{i}"] = score_errors(err)
        names[f"TestSeq{i}"] = ts
        per_seq_err.append(err)
        per_seq_act.append(np.asarray(ann["activity"])[valid])
    all_err = np.concatenate(per_seq_err) if per_seq_err else np.zeros((0, 17))
    all_act = np.concatenate(per_seq_act) if per_seq_act else np.zeros(0, np.int64)
    activities = {
        name: score_errors(all_err[all_act == a]) for a, name in enumerate(ACTIVITIES, start=1)
    }
    activities["All"] = score_errors(all_err)
    return StepResult(sequences=rows, sequence_names=names, activities=activities)


def evaluate_prediction(
    pred: dict[str, np.ndarray],
    annotations: dict[str, dict[str, np.ndarray]],
    path: Any = None,
) -> list[StepResult]:
    """Score every step of an exported prediction ``{"TS<i>": (3, 17, N, K)}``.

    Only sequences present in both ``pred`` and ``annotations`` are scored. Returns K results.
    """
    common = [ts for ts in pred if ts in annotations]
    if not common:
        raise DataError(path, f"no sequence in common with the annotations ({sorted(annotations)})")
    steps = {pred[ts].shape[3] for ts in common}
    if len(steps) != 1:
        raise DataError(path, f"sequences disagree on the number of steps: {steps}")
    for ts in common:
        n_pred, n_ann = pred[ts].shape[2], annotations[ts]["annot3"].shape[0]
        if n_pred != n_ann:
            raise DataError(path, f"{ts}: prediction has {n_pred} frames, annotations {n_ann}")
    # (3, 17, N, K)[..., k] -> (N, 17, 3)
    return [
        evaluate_step({ts: pred[ts][..., k].transpose(2, 1, 0) for ts in common}, annotations)
        for k in range(steps.pop())
    ]


# --- tables ---------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return f"{v:.15g}"


def official_csv_lines(rows: dict[str, Scores], header_prefix: str) -> list[str]:
    """The official CSV layout: a ``<prefix>1..19`` header, then MPJPE, PCK and AUC blocks."""
    pad = [""] * (N_COLUMNS - 1 - len(GROUPS) - 1)
    group_names = [g for g, _ in GROUPS]
    lines = [",".join(f"{header_prefix}{i}" for i in range(1, N_COLUMNS + 1))]
    lines.append(",".join(["", *JOINT_NAMES, "Average"]))
    lines += [",".join([n, *map(_fmt, r.mpjpe), _fmt(r.average)]) for n, r in rows.items()]
    lines.append(",".join(["PCK", *group_names, "Total", *pad]))
    lines += [",".join([n, *map(_fmt, r.pck), _fmt(r.pck_total), *pad]) for n, r in rows.items()]
    lines.append(",".join(["AUC", *group_names, "Total", *pad]))
    lines += [",".join([n, *map(_fmt, r.auc), _fmt(r.auc_total), *pad]) for n, r in rows.items()]
    return lines


def csv_names(aggregation: str, step: int) -> tuple[str, str]:
    """Official names ``mpii_3dhp_evaluation_{sequencewise,activitywise}_ori_{agg}_t{step}.csv``."""
    return tuple(
        f"mpii_3dhp_evaluation_{kind}_ori_{aggregation}_t{step}.csv"
        for kind in ("sequencewise", "activitywise")
    )


def write_step_csvs(
    result: StepResult, out_dir: str | Path, aggregation: str, step: int
) -> list[Path]:
    """Write the sequence-wise and activity-wise CSVs of one step (1-based) atomically."""
    seq_name, act_name = csv_names(aggregation, step)
    paths = []
    for name, rows, prefix in ((seq_name, result.sequences, "seq_table"),
                               (act_name, result.activities, "activity_table")):
        path = Path(out_dir) / name
        with atomic_open(path, "w", newline="") as fh:
            fh.write("\n".join(official_csv_lines(rows, prefix)) + "\n")
        paths.append(path)
    return paths


def read_official_csv(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """Parse an evaluator CSV (ours or MATLAB's, with or without the ``*_table`` header line).

    Returns ``{"mpjpe"|"pck"|"auc": {row name: {column: value}}}``.
    """
    blocks: dict[str, dict[str, dict[str, float]]] = {}
    block, header = None, []
    for raw in Path(path).read_text().splitlines():
        cells = raw.split(",")
        if not raw.strip() or cells[0].endswith("_table1"):
            continue
        if cells[0] in ("", "PCK", "AUC"):
            block = {"": "mpjpe", "PCK": "pck", "AUC": "auc"}[cells[0]]
            header = [c for c in cells[1:] if c]
            blocks[block] = {}
            continue
        if block is None:
            raise DataError(path, f"row before any block header: {raw[:40]}")
        values = [float(c) for c in cells[1 : 1 + len(header)]]
        blocks[block][cells[0]] = dict(zip(header, values, strict=True))
    return blocks


def tidy_frame(result: StepResult, aggregation: str, step: int, oracle: bool) -> pd.DataFrame:
    """Long rows: aggregation, oracle, step, table, row, sequence, metric, column, value, frames."""
    records = []
    for table, rows in (("sequence", result.sequences), ("activity", result.activities)):
        for name, r in rows.items():
            base = {"aggregation": aggregation, "oracle": oracle, "step": step, "table": table,
                    "row": name, "sequence": result.sequence_names.get(name, ""),
                    "frames": r.frames}
            cols = (
                [("mpjpe_mm", j, v) for j, v in zip(JOINT_NAMES, r.mpjpe, strict=True)]
                + [("mpjpe_mm", "Average", r.average)]
                + [("pck", g, v) for (g, _), v in zip(GROUPS, r.pck, strict=True)]
                + [("pck", "Total", r.pck_total)]
                + [("auc", g, v) for (g, _), v in zip(GROUPS, r.auc, strict=True)]
                + [("auc", "Total", r.auc_total)]
            )
            records.extend(
                {**base, "metric": m, "column": c, "value": float(v)} for m, c, v in cols
            )
    return pd.DataFrame.from_records(records)


# --- whole files ----------------------------------------------------------------------------------


def evaluate_files(
    pred_paths: list[str | Path],
    annotations: dict[str, dict[str, np.ndarray]],
    out_dir: str | Path,
    aggregation: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score exported prediction files and write the official CSVs of every step.

    The aggregation of a file is ``aggregation`` or the one its ``inference_data_<agg>`` name
    says (else the file stem). Returns the tidy frame of every row and a summary dict
    ``{"aggregations": {agg: {"name", "oracle", "per_step": [{step, mpjpe_mm, pck, auc}],
    "last": {...}, "missing_sequences": [annotated sequences the file lacks]}}, "csv": [file
    names]}``.
    """
    from ddhpose.evaluation.export import (
        MAT_AGGREGATIONS,
        aggregation_from_filename,
        read_inference,
    )

    frames: list[pd.DataFrame] = []
    aggregations: dict[str, Any] = {}
    written: list[Path] = []
    for path in map(Path, pred_paths):
        agg = aggregation or aggregation_from_filename(path) or path.stem
        if agg in aggregations:
            raise DataError(path, f"aggregation '{agg}' given twice")
        name = MAT_AGGREGATIONS.get(agg, agg)
        oracle = "oracle" in name
        pred = read_inference(path)
        steps = evaluate_prediction(pred, annotations, path)
        per_step = []
        for k, result in enumerate(steps, start=1):
            written += write_step_csvs(result, out_dir, agg, k)
            frames.append(tidy_frame(result, name, k, oracle))
            per_step.append({"step": k, **result.headline()})
        aggregations[agg] = {
            "name": name, "oracle": oracle, "file": str(path),
            "sequences": steps[0].sequence_names, "per_step": per_step, "last": per_step[-1],
            "missing_sequences": [ts for ts in annotations if ts not in pred],
        }
    summary = {"unit": "mm (PCK, AUC in %)", "aggregations": aggregations,
               "csv": [p.name for p in written]}
    return pd.concat(frames, ignore_index=True), summary


__all__ = [
    "ACTIVITIES",
    "AUC_THRESHOLDS_MM",
    "GROUPS",
    "JOINT_NAMES",
    "PCK_THRESHOLD_MM",
    "ROOT",
    "Scores",
    "StepResult",
    "csv_names",
    "evaluate_files",
    "evaluate_prediction",
    "evaluate_step",
    "official_csv_lines",
    "pck_curve",
    "per_joint_errors",
    "read_official_csv",
    "score_errors",
    "tidy_frame",
    "write_step_csvs",
]

"""Is the spread over hypotheses a usable uncertainty? Rank agreement between each joint's
spread and its error on the test set (docs/evaluation.md "Temporal quality and uncertainty").

Inputs are per (frame, joint): the spread ``(T, J)`` saved by the sample stage
(:func:`ddhpose.evaluation.uncertainty.joint_spread` at the last DDIM step) and an aggregation's
Euclidean joint error ``(T, J)``, both in metres; the root joint (always 0 in both) and invalid
frames are left out. Reported per aggregation:

- ``spearman``: Spearman rank correlation over all remaining (frame, joint) pairs;
- ``spearman_within_joint``: the same computed separately for each joint type over frames, then
  averaged over joints — high only if the spread ranks the frames of one joint, not merely
  "wrists are harder than hips";
- ``top10_mm`` / ``bottom10_mm`` / ``all_mm``: the mean error (mm) of the 10 % pairs with the
  largest / smallest spread, and of all pairs;
- ``deciles``: mean spread and mean error (mm) per spread decile (for the plot).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ddhpose.evaluation import plots
from ddhpose.evaluation.metrics import joint_errors
from ddhpose.evaluation.temporal_report import Report, write_csv

if TYPE_CHECKING:
    from ddhpose.data.processed import ProcessedSplit
    from ddhpose.evaluation.predict import SplitPredictions

FRACTION = 0.10
DECILES = 10


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN for fewer than 3 pairs or a constant input."""
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def calibration(spread: np.ndarray, errors: np.ndarray, *, root: int | None = 0,
                valid: np.ndarray | None = None) -> dict[str, Any]:
    """Calibration numbers of one aggregation.

    Args:
        spread: (T, J) spread over hypotheses, metres.
        errors: (T, J) joint errors of the aggregation, metres.
        root: the root joint to leave out (None keeps every joint).
        valid: (T,) bool scored frames (default all).
    Returns:
        dict with ``pairs`` (int), ``spearman``, ``spearman_within_joint`` (NaN where undefined,
        e.g. H = 1: every spread is 0), ``top10_mm``, ``bottom10_mm`` (mm; NaN when every
        spread is equal), ``all_mm`` (mm), and
        ``deciles``: {"spread_mm": [...], "error_mm": [...]} (lowest spread first; fewer bins
        when there are fewer than 10 pairs).
    """
    s = np.asarray(spread, np.float64)
    e = np.asarray(errors, np.float64)
    if s.ndim != 2 or s.shape != e.shape:
        raise ValueError(f"calibration: spread {s.shape} and errors {e.shape} must both be (T, J)")
    keep = np.ones(s.shape[1], bool)
    if root is not None:
        keep[root] = False
    frames = np.ones(s.shape[0], bool) if valid is None else np.asarray(valid, bool)
    s, e = s[frames][:, keep], e[frames][:, keep]
    flat_s, flat_e = s.ravel(), e.ravel()
    n = flat_s.size
    if n == 0:
        raise ValueError("calibration: no (frame, joint) pair to score")
    within = [_spearman(s[:, j], e[:, j]) for j in range(s.shape[1])]
    within = [w for w in within if np.isfinite(w)]
    order = np.argsort(flat_s, kind="stable")  # ties keep frame order: no invented ranking
    k = max(1, round(FRACTION * n))
    constant = np.ptp(flat_s) == 0  # e.g. H = 1: no ranking, no top or bottom 10 %
    bins = np.array_split(order, min(DECILES, n))
    return {
        "pairs": int(n),
        "spearman": _spearman(flat_s, flat_e),
        "spearman_within_joint": float(np.mean(within)) if within else float("nan"),
        "top10_mm": float("nan") if constant else float(flat_e[order[-k:]].mean() * 1000.0),
        "bottom10_mm": float("nan") if constant else float(flat_e[order[:k]].mean() * 1000.0),
        "all_mm": float(flat_e.mean() * 1000.0),
        "deciles": {"spread_mm": [float(flat_s[b].mean() * 1000.0) for b in bins],
                    "error_mm": [float(flat_e[b].mean() * 1000.0) for b in bins]},
    }


def calibration_by_aggregation(spread: np.ndarray, poses: Mapping[str, np.ndarray],
                               gt: np.ndarray, *, root: int = 0,
                               valid: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """:func:`calibration` of every aggregation.

    Args:
        spread: (T, J) metres.
        poses: aggregation -> (T, K, J, 3) or (T, J, 3) root-relative metres (last step used).
        gt: (T, J, 3) root-relative metres.
        root, valid: as :func:`calibration`.
    """
    out = {}
    for agg, arr in poses.items():
        p = np.asarray(arr)
        p = p[:, -1] if p.ndim == 4 else p
        err = joint_errors(p.astype(np.float64), np.asarray(gt, np.float64))
        out[agg] = calibration(spread, err, root=root, valid=valid)
    return out


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def uncertainty_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (aggregation, pairs, spearman, spearman_within_joint, top10_mm, bottom10_mm,
    all_mm) for ``reports/eval/uncertainty.csv``."""
    cols = ["pairs", "spearman", "spearman_within_joint", "top10_mm", "bottom10_mm", "all_mm"]
    return pd.DataFrame([{"aggregation": agg, **{c: r[c] for c in cols}}
                         for agg, r in results.items()], columns=["aggregation", *cols])


def uncertainty_dict(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``metrics.json["uncertainty"]``: the results with NaN as null (JSON has no NaN)."""
    return {agg: {k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()}
            for agg, r in results.items()}


def uncertainty_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """MLflow metrics ``unc_spearman_<agg>``, ``unc_spearman_within_joint_<agg>``,
    ``unc_top10_mm_<agg>``, ``unc_bottom10_mm_<agg>`` (finite values only)."""
    out = {}
    for agg, r in results.items():
        for key in ("spearman", "spearman_within_joint", "top10_mm", "bottom10_mm"):
            if np.isfinite(r[key]):
                out[f"unc_{key}_{agg}"] = float(r[key])
    return out


def uncertainty_report(split: ProcessedSplit, pred: SplitPredictions, eval_dir: Path,
                       plots_dir: Path) -> Report:
    """Calibration of every aggregation against ``pred.spread`` -> ``<eval_dir>/uncertainty.csv``,
    ``<plots_dir>/uncertainty_vs_error.png`` and metrics.json key ``uncertainty``; with no
    ``spread`` (predictions written before it was kept) one printed line and nothing else."""
    rep = Report()
    if pred.spread is None:
        rep.lines.append("evaluate: predictions.npz has no 'spread' (written by an older sample "
                         "stage): no uncertainty calibration; rerun sample to get it")
        return rep
    results = calibration_by_aggregation(pred.spread, pred.poses, split.pose_3d,
                                         root=split.skeleton.root, valid=split.valid)
    rep.files.append(write_csv(uncertainty_table(results), Path(eval_dir) / "uncertainty.csv"))
    rep.files.append(plots.plot_uncertainty_vs_error(
        results, Path(plots_dir) / "uncertainty_vs_error.png"))
    rep.metrics["uncertainty"] = uncertainty_dict(results)
    rep.mlflow.update(uncertainty_metrics(results))
    rep.lines.append("evaluate: uncertainty " + ", ".join(
        f"{agg} Spearman {r['spearman']:.2f} (within joint {r['spearman_within_joint']:.2f}), "
        f"10 % most / least uncertain {r['top10_mm']:.1f} / {r['bottom10_mm']:.1f} mm"
        for agg, r in results.items() if agg in ("p_agg", "j_agg")))
    return rep


__all__ = [
    "calibration",
    "calibration_by_aggregation",
    "uncertainty_dict",
    "uncertainty_metrics",
    "uncertainty_report",
    "uncertainty_table",
]

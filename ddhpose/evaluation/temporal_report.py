"""Temporal errors of saved predictions on a test split, and the effect of the temporal filter
(docs/evaluation.md "Temporal quality and uncertainty").

Differences are taken only inside a **segment**: a run of consecutive valid frames of one
sequence (a whole sequence for Human3.6M; for MPI-INF-3DHP the runs of ``valid`` frames), so no
difference crosses a sequence boundary or skips an unscored frame. Errors are computed at the
last DDIM step on the written-back per-frame predictions (each frame once), over all J joints
(the root is 0 in prediction and ground truth, as in MPJPE), in millimetres.

Grouping follows the Human3.6M protocol: per group the error is the mean over all its
(difference, joint) entries (frame-weighted), and the overall value is the unweighted mean over
groups. The group is the action group (the name before the first space) for Human3.6M and the
sequence name (TS1 … TS6) for MPI-INF-3DHP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddhpose.data.processed import ProcessedSplit
from ddhpose.evaluation.h36m import action_group
from ddhpose.evaluation.metrics import joint_errors
from ddhpose.evaluation.temporal import acceleration_error, smooth_poses, velocity_error
from ddhpose.io import atomic_open

OVERALL = "Average"
DEPLOYABLE = ("p_agg", "j_agg")  # the aggregations that need no ground truth
SMOOTH_ORDER = 2


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, stop)`` of the split's frame axis: consecutive valid frames of one
    sequence ``seq`` in group ``group``."""

    seq: int
    group: str
    start: int
    stop: int


def group_of(split: ProcessedSplit, seq: int) -> str:
    """The reporting group of sequence ``seq``: Human3.6M action group or 3DHP sequence name."""
    if split.dataset == "3dhp":
        return str(split.seq_name[seq])
    return action_group(str(split.seq_action[seq]))


def segments(split: ProcessedSplit) -> list[Segment]:
    """Every run of consecutive valid frames of every sequence, in frame order."""
    out = []
    for seq in range(split.num_sequences):
        lo = int(split.seq_start[seq])
        valid = np.asarray(split.valid[lo:lo + int(split.seq_length[seq])], bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
        group = group_of(split, seq)
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            out.append(Segment(seq, group, lo + int(a), lo + int(b)))
    return out


class _GroupMeans:
    """Running sums and counts per (key, group); the per-group mean is frame-weighted."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], float] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, key: str, group: str, values: np.ndarray) -> None:
        if values.size:
            k = (key, group)
            self.sums[k] = self.sums.get(k, 0.0) + float(values.sum())
            self.counts[k] = self.counts.get(k, 0) + int(values.size)

    def per_group(self, key: str) -> dict[str, float]:
        return {g: self.sums[(k, g)] / self.counts[(k, g)]
                for (k, g) in sorted(self.sums) if k == key}

    def overall(self, key: str) -> float | None:
        groups = self.per_group(key)
        return float(np.mean(list(groups.values()))) if groups else None


def _last_step(poses: np.ndarray) -> np.ndarray:
    """(T, K, J, 3) -> (T, J, 3) at the last DDIM step; (T, J, 3) passes."""
    arr = np.asarray(poses)
    return arr[:, -1] if arr.ndim == 4 else arr


def _iter(split: ProcessedSplit, pred: np.ndarray) -> Iterator[tuple[Segment, np.ndarray,
                                                                      np.ndarray]]:
    gt = np.asarray(split.pose_3d, np.float64)
    for seg in segments(split):
        yield seg, np.asarray(pred[seg.start:seg.stop], np.float64), gt[seg.start:seg.stop]


def temporal_errors(split: ProcessedSplit, poses: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """MPJVE (mm/frame) and acceleration error (mm/frame²) per group and overall.

    Args:
        split: the test split (ground truth (T, J, 3) metres, sequences, validity).
        poses: aggregation -> (T, K, J, 3) or (T, J, 3) root-relative metres; the last DDIM step
            is used.
    Returns:
        rows (action, aggregation, mpjve_mm, accel_mm); ``action`` is the group, or
        ``"Average"`` for the unweighted mean over groups. NaN where a group has no segment
        long enough (2 frames for velocity, 3 for acceleration).
    """
    acc = _GroupMeans()
    for agg, arr in poses.items():
        for seg, p, g in _iter(split, _last_step(arr)):
            acc.add(f"v/{agg}", seg.group, velocity_error(p, g) * 1000.0)
            acc.add(f"a/{agg}", seg.group, acceleration_error(p, g) * 1000.0)
    rows = []
    for agg in poses:
        vel, accel = acc.per_group(f"v/{agg}"), acc.per_group(f"a/{agg}")
        for group in sorted(set(vel) | set(accel)):
            rows.append({"action": group, "aggregation": agg,
                         "mpjve_mm": vel.get(group, np.nan), "accel_mm": accel.get(group, np.nan)})
        rows.append({"action": OVERALL, "aggregation": agg,
                     "mpjve_mm": _nan(acc.overall(f"v/{agg}")),
                     "accel_mm": _nan(acc.overall(f"a/{agg}"))})
    return pd.DataFrame(rows, columns=["action", "aggregation", "mpjve_mm", "accel_mm"])


def filter_effect(split: ProcessedSplit, poses: Mapping[str, np.ndarray], window: int,
                  aggregations: Sequence[str] = DEPLOYABLE,
                  order: int = SMOOTH_ORDER) -> pd.DataFrame:
    """MPJPE (P1) and acceleration error with and without :func:`smooth_poses`, per segment.

    Each segment is filtered on its own (never across a sequence boundary or an invalid frame).
    P1 here is the mean joint error of each frame once (per group frame-weighted, overall the
    mean over groups), so it can differ slightly from the protocol table's P1, which scores the
    overlap of a sequence's last clip twice; both columns are computed the same way.

    Args:
        split, poses: as :func:`temporal_errors`.
        window: the Savitzky–Golay window (odd >= 3, ``eval.smooth_window``).
        aggregations: the aggregations to measure (those present in ``poses``).
    Returns:
        one row per aggregation: (aggregation, window, order, p1_mm, p1_mm_smoothed, accel_mm,
        accel_mm_smoothed), overall values.
    """
    acc = _GroupMeans()
    for agg in aggregations:
        if agg not in poses:
            continue
        for seg, p, g in _iter(split, _last_step(poses[agg])):
            s = smooth_poses(p, window, order)
            acc.add(f"p1/{agg}", seg.group, joint_errors(p, g) * 1000.0)
            acc.add(f"p1s/{agg}", seg.group, joint_errors(s, g) * 1000.0)
            acc.add(f"a/{agg}", seg.group, acceleration_error(p, g) * 1000.0)
            acc.add(f"as/{agg}", seg.group, acceleration_error(s, g) * 1000.0)
    rows = [{"aggregation": agg, "window": int(window), "order": int(order),
             "p1_mm": _nan(acc.overall(f"p1/{agg}")),
             "p1_mm_smoothed": _nan(acc.overall(f"p1s/{agg}")),
             "accel_mm": _nan(acc.overall(f"a/{agg}")),
             "accel_mm_smoothed": _nan(acc.overall(f"as/{agg}"))}
            for agg in aggregations if agg in poses]
    return pd.DataFrame(rows, columns=["aggregation", "window", "order", "p1_mm",
                                       "p1_mm_smoothed", "accel_mm", "accel_mm_smoothed"])


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    v = float(value)
    return v if np.isfinite(v) else None


def temporal_dict(table: pd.DataFrame) -> dict[str, Any]:
    """``metrics.json["temporal"]``: ``{agg: {"mpjve_mm", "accel_mm", "per_action": {group:
    {"mpjve_mm", "accel_mm"}}}}`` from :func:`temporal_errors` rows."""
    out: dict[str, Any] = {}
    for agg, rows in table.groupby("aggregation", sort=False):
        overall = rows[rows["action"] == OVERALL].iloc[0]
        out[str(agg)] = {
            "mpjve_mm": _num(overall["mpjve_mm"]), "accel_mm": _num(overall["accel_mm"]),
            "per_action": {str(r.action): {"mpjve_mm": _num(r.mpjve_mm),
                                           "accel_mm": _num(r.accel_mm)}
                           for r in rows.itertuples(index=False) if r.action != OVERALL},
        }
    return out


def filter_dict(table: pd.DataFrame) -> dict[str, Any]:
    """``metrics.json["temporal_filter"]``: ``{"window", "order", agg: {"p1_mm",
    "p1_mm_smoothed", "accel_mm", "accel_mm_smoothed"}}`` from :func:`filter_effect` rows."""
    out: dict[str, Any] = {}
    for r in table.itertuples(index=False):
        out["window"], out["order"] = int(r.window), int(r.order)
        out[str(r.aggregation)] = {k: _num(getattr(r, k)) for k in
                                   ("p1_mm", "p1_mm_smoothed", "accel_mm", "accel_mm_smoothed")}
    return out


def temporal_metrics(table: pd.DataFrame) -> dict[str, float]:
    """MLflow metrics: ``mpjve_<agg>/<action>``, ``accel_<agg>/<action>`` per group and
    ``mpjve_<agg>_last``, ``accel_<agg>_last`` overall (finite values only)."""
    out: dict[str, float] = {}
    for r in table.itertuples(index=False):
        if r.action == OVERALL:
            keys = (f"mpjve_{r.aggregation}_last", f"accel_{r.aggregation}_last")
        else:
            name = str(r.action).replace(" ", "_")
            keys = (f"mpjve_{r.aggregation}/{name}", f"accel_{r.aggregation}/{name}")
        for key, value in zip(keys, (r.mpjve_mm, r.accel_mm), strict=True):
            if np.isfinite(value):
                out[key] = float(value)
    return out


def filter_metrics(table: pd.DataFrame) -> dict[str, float]:
    """MLflow metrics: ``filter_p1_<agg>_raw|_smoothed`` and ``filter_accel_<agg>_raw|_smoothed``
    (mm, mm/frame²)."""
    out: dict[str, float] = {}
    for r in table.itertuples(index=False):
        for name, raw, smoothed in (("p1", r.p1_mm, r.p1_mm_smoothed),
                                    ("accel", r.accel_mm, r.accel_mm_smoothed)):
            if np.isfinite(raw) and np.isfinite(smoothed):
                out[f"filter_{name}_{r.aggregation}_raw"] = float(raw)
                out[f"filter_{name}_{r.aggregation}_smoothed"] = float(smoothed)
    return out


@dataclass
class Report:
    """What the evaluate stage adds: ``metrics`` (keys of ``metrics.json``), ``mlflow`` (metric
    name -> value), ``files`` (the CSVs / plots written) and ``lines`` (what it prints)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` atomically as CSV (no index)."""
    with atomic_open(path, "w", newline="") as fh:
        table.to_csv(fh, index=False)
    return path


def temporal_report(split: ProcessedSplit, poses: Mapping[str, np.ndarray], eval_dir: Path,
                    smooth_window: int) -> Report:
    """Temporal errors of every aggregation -> ``<eval_dir>/temporal.csv`` and, unless
    ``smooth_window`` is 0, the filter's effect on the deployable aggregations ->
    ``<eval_dir>/temporal_filter.csv``; metrics.json keys ``temporal`` and ``temporal_filter``."""
    rep = Report()
    table = temporal_errors(split, poses)
    rep.files.append(write_csv(table, Path(eval_dir) / "temporal.csv"))
    rep.metrics["temporal"] = temporal_dict(table)
    rep.mlflow.update(temporal_metrics(table))
    overall = table[table["action"] == OVERALL].set_index("aggregation")
    rep.lines.append("evaluate: temporal (last step) " + ", ".join(
        f"{agg} MPJVE {r.mpjve_mm:.2f} mm/frame accel {r.accel_mm:.2f} mm/frame^2"
        for agg, r in overall.iterrows() if agg in DEPLOYABLE))
    if smooth_window:
        effect = filter_effect(split, poses, smooth_window)
        rep.files.append(write_csv(effect, Path(eval_dir) / "temporal_filter.csv"))
        rep.metrics["temporal_filter"] = filter_dict(effect)
        rep.mlflow.update(filter_metrics(effect))
        rep.lines.append(f"evaluate: temporal filter (Savitzky-Golay, {smooth_window} frames) "
                         + ", ".join(f"{r.aggregation} P1 {r.p1_mm:.2f} -> "
                                     f"{r.p1_mm_smoothed:.2f} mm, accel {r.accel_mm:.2f} -> "
                                     f"{r.accel_mm_smoothed:.2f} mm/frame^2"
                                     for r in effect.itertuples(index=False)))
    return rep


__all__ = [
    "DEPLOYABLE",
    "OVERALL",
    "Report",
    "Segment",
    "filter_dict",
    "filter_effect",
    "filter_metrics",
    "group_of",
    "segments",
    "temporal_dict",
    "temporal_errors",
    "temporal_metrics",
    "temporal_report",
    "write_csv",
]

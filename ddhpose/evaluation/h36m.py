"""The Human3.6M evaluation protocol (docs/model.md "Human3.6M P1/P2"): frame-weighted averages per
action.

Each test sequence (one subject / action / camera) of N frames is cut into ``ceil(N / F)`` clips
by :func:`ddhpose.data.clips.sequence_eval_clips` (non-overlapping F-frame clips plus the **last F
frames**, whose overlap with the previous clip is scored twice, as the reference does). Clips are
scored in consecutive batches of ``batch_clips`` (reference ``-b 4``), every batch with the four
aggregations of :mod:`ddhpose.evaluation.aggregate`. Per action
group (the name before the first space)
the error is the frame-weighted mean over batches; the headline is the unweighted mean over
action groups, for every aggregation, protocol and DDIM step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddhpose.evaluation.aggregate import AGGREGATIONS, ORACLE, aggregate_batch
from ddhpose.io import atomic_open, write_json


def action_group(action: str) -> str:
    """The action group of a sequence name: the part before the first space."""
    return action.split(" ")[0]


# --- accumulation ---------------------------------------------------------------------------------


@dataclass
class ProtocolAccumulator:
    """Frame-weighted per-action accumulation of the batch errors (docs/model.md "Human3.6M P1/P2").

    Call :meth:`add` once per batch (or :meth:`add_errors` with precomputed errors), then read
    :meth:`table` (tidy rows) and :meth:`summary` (headline = unweighted mean over action groups).
    """

    root: int = 0
    unit_to_mm: float = 1000.0
    protocol2: bool = True
    _sums: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    _frames: dict[str, float] = field(default_factory=dict)

    def add(
        self, action: str, batch_pred: Any, gt: Any, traj: Any, x2d: Any, intrinsic: Any
    ) -> dict[str, np.ndarray]:
        """Score one batch (pred (b,K,H,F,J,3), gt (b,F,J,3), traj (b,F,1,3), x2d (b,F,J,2),
        intrinsic (9,) or (b,9)) and add it to ``action``'s group. Returns the batch errors (mm)."""
        result = aggregate_batch(
            batch_pred, gt, traj, x2d, intrinsic,
            root=self.root, unit_to_mm=self.unit_to_mm, protocol2=self.protocol2,
        )
        self.add_errors(action, result.errors_mm, result.frames)
        return result.errors_mm

    def add_errors(self, action: str, errors_mm: dict[str, np.ndarray], frames: int) -> None:
        """Add a batch's mean errors (``{p1_j_agg: (K,), ...}`` mm) weighted by its frames b·F."""
        group = action_group(action)
        sums = self._sums.setdefault(group, {})
        for key, value in errors_mm.items():
            value = np.asarray(value, dtype=np.float64) * frames
            sums[key] = sums[key] + value if key in sums else value
        self._frames[group] = self._frames.get(group, 0.0) + frames

    @property
    def actions(self) -> list[str]:
        return list(self._sums)

    def per_action(self) -> dict[str, dict[str, np.ndarray]]:
        """Action group -> ``{p1_j_agg: (K,) mm, ...}`` frame-weighted means."""
        return {
            g: {key: s / self._frames[g] for key, s in sums.items()}
            for g, sums in self._sums.items()
        }

    def table(self) -> pd.DataFrame:
        """Tidy rows: action, aggregation, protocol (P1/P2), step (1-based), mm, oracle."""
        rows = []
        for action, errors in self.per_action().items():
            for key, values in errors.items():
                protocol, aggregation = key.split("_", 1)
                rows.extend(
                    {
                        "action": action, "aggregation": aggregation,
                        "protocol": protocol.upper(), "step": step + 1, "mm": float(v),
                        "oracle": ORACLE.get(aggregation, False),
                    }
                    for step, v in enumerate(values)
                )
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    def summary(self) -> pd.DataFrame:
        """Headline per aggregation / protocol / step: unweighted mean over action groups."""
        return summarize(self.table())


TABLE_COLUMNS = ["action", "aggregation", "protocol", "step", "mm", "oracle"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Unweighted mean over actions of a :meth:`ProtocolAccumulator.table` frame."""
    keys = ["aggregation", "protocol", "step", "oracle"]
    out = table.groupby(keys, sort=False, as_index=False).agg(
        mm=("mm", "mean"), actions=("action", "nunique")
    )
    order = {a: i for i, a in enumerate(AGGREGATIONS)}
    out = out.sort_values(
        ["protocol", "aggregation", "step"], key=lambda c: c.map(order) if c.name == "aggregation"
        else c
    )
    return out.reset_index(drop=True)


def write_tables(df: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``per_action.csv``, ``per_step.csv`` (headline per step) and ``metrics.json``.

    ``metrics.json`` holds the last-step headline ``{"p1_j_agg": mm, "p1_p_best_oracle": ...}``
    and the per-step lists under ``per_step``. Returns the written paths.
    """
    out = Path(out_dir)
    summary = summarize(df)
    paths = {"per_action": out / "per_action.csv", "per_step": out / "per_step.csv",
             "json": out / "metrics.json"}
    with atomic_open(paths["per_action"], "w", newline="") as fh:
        df.to_csv(fh, index=False)
    with atomic_open(paths["per_step"], "w", newline="") as fh:
        summary.to_csv(fh, index=False)
    per_step: dict[str, list[float]] = {}
    for (protocol, aggregation), grp in summary.groupby(["protocol", "aggregation"], sort=False):
        per_step[f"{protocol.lower()}_{aggregation}"] = grp.sort_values("step")["mm"].tolist()
    write_json(paths["json"], {
        "unit": "mm",
        "headline": {key: values[-1] for key, values in per_step.items()},
        "per_step": per_step,
        "oracle": sorted(k for k in per_step if "oracle" in k),
        "actions": sorted(df["action"].unique().tolist()),
    })
    return paths


__all__ = [
    "TABLE_COLUMNS",
        "ProtocolAccumulator",
    "action_group",
    "summarize",
    "write_tables",
]

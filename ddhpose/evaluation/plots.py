"""Report plots written by the evaluate stage (PNG, matplotlib Agg backend).

Inputs are the tidy tables of the evaluation modules:
- Human3.6M: rows (action, aggregation, protocol, step, mm, oracle).
- training log: rows (epoch, loss_total, ..., val_mpjpe_mm).
- MPI-INF-3DHP: a PCK curve per aggregation, thresholds in mm.
- uncertainty calibration: mean spread and error (mm) per spread decile per aggregation
  (:func:`ddhpose.evaluation.calibration.calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ddhpose.io import atomic_path


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(aggregation: str, oracle: bool) -> str:
    return f"{aggregation} (oracle)" if oracle and "oracle" not in aggregation else aggregation


def plot_error_per_action(table: pd.DataFrame, path: Path, protocol: str = "P1") -> Path:
    """Grouped bars: error (mm) per action for every aggregation, at the last DDIM step."""
    rows = table[(table["protocol"] == protocol) & (table["action"] != "Average")]
    rows = rows[rows["step"] == rows["step"].max()]
    actions = sorted(rows["action"].unique())
    aggs = list(dict.fromkeys(rows["aggregation"]))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(actions) + 2), 4))
    width = 0.8 / max(1, len(aggs))
    for i, agg in enumerate(aggs):
        sub = rows[rows["aggregation"] == agg].set_index("action")
        vals = [float(sub.loc[a, "mm"]) if a in sub.index else np.nan for a in actions]
        oracle = bool(sub["oracle"].iloc[0]) if len(sub) else False
        ax.bar(np.arange(len(actions)) + i * width, vals, width, label=_label(agg, oracle))
    ax.set_xticks(np.arange(len(actions)) + 0.4 - width / 2)
    ax.set_xticklabels(actions, rotation=45, ha="right")
    ax.set_ylabel(f"{'MPJPE' if protocol == 'P1' else 'P-MPJPE'} (mm)")
    ax.set_title(f"Error per action, {protocol}, last DDIM step")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_error_per_step(summary: pd.DataFrame, path: Path) -> Path:
    """Lines: headline error (mm) against DDIM step, one line per aggregation and protocol.

    ``summary`` rows: (aggregation, protocol, step, mm, oracle).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for (agg, proto), sub in summary.groupby(["aggregation", "protocol"], sort=False):
        sub = sub.sort_values("step")
        oracle = bool(sub["oracle"].iloc[0])
        style = "--" if proto == "P2" else "-"
        ax.plot(sub["step"], sub["mm"], style, marker="o", label=f"{_label(agg, oracle)} {proto}")
    ax.set_xlabel("DDIM step")
    ax.set_ylabel("error (mm)")
    ax.set_title("Error against DDIM step")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_training_curves(log: pd.DataFrame, path: Path) -> Path:
    """Training loss terms and validation MPJPE against epoch."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for col in ("loss_total", "loss_pos", "loss_len", "loss_dir"):
        if col in log:
            ax1.plot(log["epoch"], log[col], marker=".", label=col)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    if "val_mpjpe_mm" in log:
        ax2.plot(log["epoch"], log["val_mpjpe_mm"], marker="o", color="C3")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation MPJPE (mm, H=1 K=1)")
    return _save(fig, path)


def plot_pck_curves(
    thresholds_mm: Sequence[float], curves: Mapping[str, Sequence[float]], path: Path
) -> Path:
    """PCK (%) against threshold (mm), one curve per aggregation."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(thresholds_mm, curve, label=name)
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("PCK (%)")
    ax.set_ylim(0, 100)
    ax.set_title("PCK against threshold")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_uncertainty_vs_error(results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Mean joint error (mm) against mean spread (mm) per spread decile, one line per
    aggregation (``results``: aggregation -> a :func:`calibration` dict with ``deciles`` and
    ``spearman``). A calibrated spread gives a rising line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for agg, r in results.items():
        dec = r["deciles"]
        rho = r["spearman"]
        label = f"{agg} (Spearman {rho:.2f})" if np.isfinite(rho) else agg
        ax.plot(dec["spread_mm"], dec["error_mm"], marker="o", label=label)
    ax.set_xlabel("spread over hypotheses (mm), decile mean")
    ax.set_ylabel("joint error (mm), decile mean")
    ax.set_title("Error per spread decile (root excluded), last DDIM step")
    ax.legend(fontsize=8)
    return _save(fig, path)

"""Stage ``evaluate``: predictions + ground truth -> protocol tables, ``reports/metrics.json``,
plots, rendered clips, and everything logged to MLflow; the evaluated ``models/best.pt`` is
logged as an MLflow model and registered (``tracking.register_model``, see
:mod:`ddhpose.registry.register`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ddhpose.data.processed import load_split
from ddhpose.evaluation import plots
from ddhpose.evaluation.calibration import uncertainty_report
from ddhpose.evaluation.predict import load_predictions
from ddhpose.evaluation.report import (
    h36m_tables,
    headline,
    mean_pose_baseline,
    mpi3dhp_tables,
    per_step_dict,
)
from ddhpose.evaluation.streaming import streaming_report
from ddhpose.evaluation.temporal_report import temporal_report
from ddhpose.io import atomic_open, probe_writable, read_json, write_json
from ddhpose.project import ProjectPaths
from ddhpose.registry.register import register_evaluated_model

if TYPE_CHECKING:
    from ddhpose.config.schema import Params
    from ddhpose.tracking.tracker import Tracker


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    probe_writable(paths.eval_dir)  # a read-only reports/ fails before the work
    test = load_split(paths.split("test"))
    train = load_split(paths.split("train")) if paths.split("train").is_file() else None
    pred = load_predictions(paths.predictions / "predictions.npz", test)
    sample_meta = read_json(paths.predictions / "meta.json")
    paths.eval_dir.mkdir(parents=True, exist_ok=True)
    if test.dataset == "3dhp":
        tables = mpi3dhp_tables(test, pred, paths.eval_dir)
        _write_csv(tables.extra["tidy"], paths.eval_dir / "evaluation_3dhp.csv")
    else:
        tables = h36m_tables(test, pred)
        _write_h36m_protocol_tables(tables.table, paths.eval_dir)
    _write_csv(tables.table, paths.reports / "per_action.csv")
    _write_csv(tables.summary, paths.reports / "per_step.csv")

    head = headline(tables.summary, params.eval.headline)
    baseline = mean_pose_baseline(train, test) if train is not None else None
    metrics = {
        "dataset": test.dataset,
        "unit": "mm (PCK, AUC in %)",
        "hypotheses": sample_meta.get("hypotheses"),
        "steps": sample_meta.get("steps"),
        "headline": head,
        "baseline_mean_pose": baseline,
        "improvement_over_baseline": baseline["p1_mm"] / head["p1_mm"]
        if baseline and head.get("p1_mm") else None,
        "last_step": {k: v[-1] for k, v in per_step_dict(tables.summary).items()},
        "per_step": per_step_dict(tables.summary),
        "oracle_aggregations": ["p_best_oracle", "j_best_oracle"],
        "sample_frames_per_second": sample_meta.get("frames_per_second"),
    }
    quality = [temporal_report(test, pred.poses, paths.eval_dir, params.eval.smooth_window),
               uncertainty_report(test, pred, paths.eval_dir, paths.plots),
               streaming_report(paths.best, test, pred.poses, sample_meta, paths.eval_dir,
                                params.eval.stream_frames)]  # docs/inference.md "Streaming"
    for rep in quality:  # docs/evaluation.md "Temporal quality and uncertainty"
        metrics.update(rep.metrics)
    write_json(paths.metrics, metrics)

    figures = [
        plots.plot_error_per_step(tables.summary, paths.plots / "error_per_step.png"),
        plots.plot_error_per_action(tables.table, paths.plots / "error_per_action.png"),
    ]
    if paths.train_log.is_file() and len(pd.read_csv(paths.train_log)):
        figures.append(plots.plot_training_curves(pd.read_csv(paths.train_log),
                                                  paths.plots / "training_curves.png"))
    if test.dataset == "3dhp":
        figures.append(plots.plot_pck_curves(tables.extra["thresholds_mm"],
                                             tables.extra["pck_curves"],
                                             paths.plots / "pck_vs_threshold.png"))
    figures += _render_clips(params, test, pred, paths)
    figures += [f for rep in quality for f in rep.files if f.suffix == ".png"]

    _log(tracker, params, tables, metrics, figures, paths)
    for rep in quality:  # per action in the stage's run; overall values also in the parent
        tracker.log_metrics({k: v for k, v in rep.mlflow.items() if "/" in k})
        tracker.log_metrics({k: v for k, v in rep.mlflow.items() if "/" not in k},
                            also_parent=True)
    register_evaluated_model(params, root, tracker, test, metrics)
    print(f"evaluate: {head['aggregation']} P1 {head['p1_mm']:.2f} mm"
          + (f", P2 {head['p2_mm']:.2f} mm" if "p2_mm" in head else "")
          + (f" (mean-pose baseline {baseline['p1_mm']:.2f} mm)" if baseline else
             " (no training split: no mean-pose baseline)") + f" -> {paths.metrics}")
    for line in (line for rep in quality for line in rep.lines):
        print(line)


def _write_h36m_protocol_tables(table: pd.DataFrame, out_dir: Path) -> None:
    """``eval/h36m_<P1|P2>.csv``: the paper's table layout, millimetres at the last DDIM step,
    one row per action and one column per aggregation."""
    last = table[table["step"] == table["step"].max()]
    for protocol, rows in last.groupby("protocol"):
        wide = rows.pivot_table(index="action", columns="aggregation", values="mm")
        wide.loc["Average"] = wide.mean()
        _write_csv(wide.reset_index(), out_dir / f"h36m_{str(protocol).lower()}.csv")


def _render_clips(params: Params, test: Any, pred: Any, paths: ProjectPaths) -> list[Path]:
    """Render the first ``eval.render_clips`` test sequences (prediction against ground truth)
    as PNG strips; ``ddhpose render`` makes animations."""
    n = int(params.eval.render_clips)
    if n <= 0:
        return []
    try:
        from ddhpose.inference.render import render_sequence
    except ImportError:  # pragma: no cover - viz is part of the package
        return []
    from ddhpose.camera import image_coordinates

    agg = params.eval.headline
    out = []
    frames = int(min(2 * 50, min(test.seq_length)))
    for seq in list(test.sequences())[:n]:
        lo = int(test.seq_start[seq.index])
        w, h = (int(v) for v in seq.res)
        path = paths.plots / f"clip_{seq.index:02d}.png"  # a strip of frames (fast)
        render_sequence(
            pred.poses[agg][lo:lo + frames, -1], path,
            keypoints_2d=image_coordinates(seq.pose_2d[:frames], w, h),
            gt=seq.pose_3d[:frames], skeleton=test.skeleton,
            title=f"{seq.name}: {agg} (last step) vs ground truth",
        )
        out.append(path)
    return out


def sequence_metrics(tidy: pd.DataFrame) -> dict[int, dict[str, float]]:
    """3DHP summary columns as MLflow metrics per DDIM step: ``<metric>_<aggregation>/<name>``,
    e.g. ``pck_j_agg/TS5``, ``auc_j_agg/TS5``, ``mpjpe_mm_j_agg/TS5`` (sequences) and
    ``pck_j_agg/Sitting`` (activities; their MPJPE is ``p1_<aggregation>/<activity>``)."""
    out: dict[int, dict[str, float]] = {}
    rows = tidy[tidy["column"].isin(["Average", "Total"])]
    for row in rows.itertuples(index=False):
        if row.table == "activity" and row.metric == "mpjpe_mm":
            continue
        name = row.sequence if row.table == "sequence" else row.row
        key = f"{row.metric}_{row.aggregation}/{name}".replace(" ", "_")
        out.setdefault(int(row.step), {})[key] = float(row.value)
    return out


def _log(tracker: Tracker, params: Params, tables: Any, metrics: dict[str, Any],
         figures: list[Path], paths: ProjectPaths) -> None:
    tracker.log_params({f"eval.{k}": v for k, v in vars(params.eval).items()})
    steps = max(len(v) for v in metrics["per_step"].values())
    for step in range(steps):
        tracker.log_metrics({k: v[step] for k, v in metrics["per_step"].items()
                             if step < len(v)}, step=step + 1)
    baseline = metrics["baseline_mean_pose"]
    tracker.log_metrics({f"{k}_last": v for k, v in metrics["last_step"].items()}
                        | ({"baseline_mean_pose_p1_mm": baseline["p1_mm"]} if baseline else {}),
                        also_parent=True)
    by_step: dict[int, dict[str, float]] = {}
    for row in tables.table.itertuples(index=False):
        key = f"{str(row.protocol).lower()}_{row.aggregation}/{row.action}".replace(" ", "_")
        by_step.setdefault(int(row.step), {})[key] = float(row.mm)
    if "tidy" in tables.extra:  # 3DHP: PCK / AUC / MPJPE per sequence and per activity
        for step, values in sequence_metrics(tables.extra["tidy"]).items():
            by_step.setdefault(step, {}).update(values)
    for step, values in sorted(by_step.items()):
        tracker.log_metrics(values, step=step)
    for path in (paths.metrics, paths.reports / "per_action.csv", paths.reports / "per_step.csv"):
        tracker.log_artifact(path, "eval")
    for fig in figures:
        tracker.log_artifact(fig, "plots")
    if any(paths.eval_dir.iterdir()):
        tracker.log_artifacts(paths.eval_dir, "eval/tables")

"""The evaluate stage's model registration: the tags a registered version carries and the call
into :mod:`ddhpose.pipeline.registry` (which logs the pyfunc model and moves the aliases).

Headline of a version: the MPJPE (mm) of ``eval.headline``'s aggregation at the last DDIM step,
``metrics.json``'s ``headline.p1_mm``, for both datasets (MPI-INF-3DHP: the unweighted mean over
the test sequences, as the official script averages; PCK / AUC are logged too but MPJPE is the
one number where lower is better for every dataset). Its tag name is
``mpjpe_mm_<aggregation>`` so an oracle headline (``p_best``, ``j_best``) is never compared with
a non-oracle one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddhpose.data.processed import file_sha256, ground_truth_fingerprint
from ddhpose.pipeline.paths import ProjectPaths
from ddhpose.pipeline.run_state import STAGE_RANKS, dvc_lock_tags, git_info


def model_name(params: Any) -> str:
    """``<tracking.experiment_prefix>-<data.dataset>``, e.g. ``ddhpose-h36m``."""
    return f"{params.tracking.experiment_prefix}-{params.data.dataset}"


def version_tags(params: Any, root: Path, test: Any, metrics: dict[str, Any],
                 checkpoint: Path) -> dict[str, str]:
    """Tags of a registered version: dataset, test-data fingerprint, git commit, dvc.lock stage
    hashes, checkpoint sha256, sampling settings and ``model.init``."""
    head = metrics["headline"]
    git = git_info(root)
    tags = {
        "dataset": params.data.dataset,
        "test_data_fingerprint": ground_truth_fingerprint(test),
        "test_frames": str(test.num_frames),
        "test_sequences": str(test.num_sequences),
        "headline_aggregation": str(head["aggregation"]),
        "headline_oracle": str(head.get("oracle", False)).lower(),
        "hypotheses": str(metrics.get("hypotheses")),
        "steps": str(metrics.get("steps")),
        "checkpoint_sha256": file_sha256(checkpoint),
        "model.init": params.model.init,
        "git.commit": git.get("git.commit", "unknown"),
        "git.dirty": git.get("git.dirty", "unknown"),
    }
    tags.update(dvc_lock_tags(root, STAGE_RANKS["evaluate"]))
    if "pck" in head:
        tags["headline_pck"] = repr(float(head["pck"]))
        tags["headline_auc"] = repr(float(head["auc"]))
    return tags


def register_evaluated_model(params: Any, root: Path, tracker: Any, test: Any,
                             metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Log ``models/best.pt`` as the run's MLflow model and register it (see the module doc).

    Returns the registry's answer, or None when registration is off or MLflow is offline.
    """
    if not params.tracking.register_model:
        return None
    if tracker.run_id is None:
        print("evaluate: model not registered: MLflow is offline (see the warning above)")
        return None
    from ddhpose.pipeline.registry import register_model

    paths = ProjectPaths(root)
    head = metrics["headline"]
    metric = f"mpjpe_mm_{head['aggregation']}"
    value = float(head["p1_mm"])
    linked = {metric: value}
    if "pck" in head:
        linked |= {f"pck_{head['aggregation']}": float(head["pck"]),
                   f"auc_{head['aggregation']}": float(head["auc"])}
    out = register_model(
        tracking_uri=tracker.uri, run_id=tracker.run_id, checkpoint=paths.best,
        name=model_name(params), tags=version_tags(params, root, test, metrics, paths.best),
        metric=metric, value=value, metrics=linked,
    )
    role = "champion" if out["champion"] else "challenger"
    print(f"evaluate: registered {out['name']} version {out['version']} as {role} "
          f"({out['reason']}); serve it: mlflow models serve -m models:/{out['name']}@{role}")
    return out

"""The evaluate stage's model registration: the pyfunc model logged in the run, the registered
version, its tags, and the aliases.

The alias rule (also in docs/registry.md). Every version the evaluate stage registers as
``<tracking.experiment_prefix>-<dataset>`` gets the alias ``challenger``. ``champion`` moves to
the new version when there is no champion, or when the champion was scored on the same test data
(equal tag ``test_data_fingerprint``) with the same headline metric and the new version's
headline value is lower (MPJPE in mm; strictly lower, so a tie keeps the old champion). Versions
scored on different test data are never compared: the champion stays, and the new version is only
the challenger.

Headline of a version: the MPJPE (mm) of ``eval.headline``'s aggregation at the last DDIM step,
``metrics.json``'s ``headline.p1_mm``, for both datasets (MPI-INF-3DHP: the unweighted mean over
the test sequences, as the official script averages; PCK / AUC are logged too but MPJPE is the
one number where lower is better for every dataset). Its tag name is
``mpjpe_mm_<aggregation>`` so an oracle headline (``p_best_oracle``, ``j_best_oracle``) is never
compared with a non-oracle one.

Outages never stop the stage. When MLflow is offline, or registration fails (the server died,
the store's disk is full, the SQLite lock timed out), the stage prints the tracker's ONE warning
and ``evaluate: model not registered: ...``, appends a ``register`` record (checkpoint path and
sha256, name, tags, headline, linked metrics) to ``reports/tracking_offline/evaluate.jsonl``
and finishes; ``ddhpose tracking sync`` registers the model later by the same alias rule
(:mod:`ddhpose.tracking.sync`). With a SQLite store, registration holds the store's
writer lock (:func:`ddhpose.tracking.sqlite_store.store_lock`), as the tracker does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddhpose.data.processed import file_sha256, ground_truth_fingerprint
from ddhpose.project import ProjectPaths
from ddhpose.tracking.run_state import STAGE_RANKS, dvc_lock_tags, git_info
from ddhpose.tracking.sqlite_store import store_lock

CHALLENGER = "challenger"
CHAMPION = "champion"


def alias_decision(champion_tags: dict[str, str] | None, fingerprint: str, metric: str,
                   value: float) -> tuple[bool, str]:
    """``(promote, reason)``: whether a new version with headline ``metric`` = ``value`` (lower
    is better) on test data ``fingerprint`` becomes champion (the module docstring's rule)."""
    if champion_tags is None:
        return True, "no champion yet"
    if champion_tags.get("test_data_fingerprint") != fingerprint:
        return False, ("the champion was scored on other test data "
                       f"({champion_tags.get('test_data_fingerprint')}): not compared")
    if champion_tags.get("headline_metric") != metric:
        return False, (f"the champion's headline is {champion_tags.get('headline_metric')}, not "
                       f"{metric}: not compared")
    try:
        best = float(champion_tags["headline_value"])
    except (KeyError, ValueError):
        return True, "the champion has no headline value"
    if value < best:
        return True, f"{metric} {value:.3f} < champion's {best:.3f}"
    return False, f"{metric} {value:.3f} >= champion's {best:.3f}"


def register_model(
    *, tracking_uri: str, run_id: str, checkpoint: Path, name: str, tags: dict[str, str],
    metric: str, value: float, metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Log ``checkpoint`` as a ddhpose pyfunc model in run ``run_id``, register it as ``name``
    with ``tags`` (+ ``headline_metric``/``headline_value``), set ``challenger`` and move
    ``champion`` by :func:`alias_decision`. ``metrics`` are linked to the logged model. Holds the
    SQLite store's writer lock throughout (a no-op for a server).

    Returns ``{name, version, model_uri, champion, reason}``; raises what MLflow raises.
    """
    _import_served_model()
    with store_lock(tracking_uri):
        return _register(tracking_uri, run_id, checkpoint, name, tags, metric, value, metrics)


# MLflow's suggestion (in raw ANSI colours) when a PythonModel's predict has no type hints; ours
# gets an explicit signature when it is logged (and type hints would become a second schema).
_TYPE_HINTS_WARNING = "Add type hints to the `predict` method"


def _import_served_model() -> None:
    """Import :mod:`ddhpose.registry.served_model` without MLflow's type-hint warning, which MLflow
    raises when the model class is defined, under its own warning filter (so a filter set here
    cannot reach it): record the import's warnings and show every other one."""
    import sys
    import warnings

    if "ddhpose.registry.served_model" in sys.modules:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import ddhpose.registry.served_model  # noqa: F401
    for w in caught:
        if _TYPE_HINTS_WARNING not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _register(tracking_uri: str, run_id: str, checkpoint: Path, name: str, tags: dict[str, str],
              metric: str, value: float, metrics: dict[str, float] | None) -> dict[str, Any]:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ddhpose.registry.served_model import log_model

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with mlflow.start_run(run_id=run_id):  # on an error the run is ended FAILED if possible
        info = log_model(checkpoint)
        if metrics:
            mlflow.log_metrics(metrics, model_id=info.model_id)
    all_tags = {**tags, "headline_metric": metric, "headline_value": repr(float(value))}
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="DDHPose 2D-to-3D lifting models "
                                       "registered by the ddhpose evaluate stage")
    mv = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=all_tags,
                                     model_id=info.model_id)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    promote, reason = alias_decision(None if champion is None else dict(champion.tags),
                                     tags.get("test_data_fingerprint", ""), metric, float(value))
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    client.set_model_version_tag(name, mv.version, "alias_decision",
                                 f"{'champion' if promote else 'challenger'}: {reason}")
    return {"name": name, "version": str(mv.version), "model_uri": info.model_uri,
            "champion": promote, "reason": reason}


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

    Returns the registry's answer, or None when registration is off or could not reach MLflow
    (then a ``register`` record waits in the offline log for ``ddhpose tracking sync``).
    """
    if not params.tracking.register_model or tracker.mode == "noop":
        return None
    paths = ProjectPaths(root)
    head = metrics["headline"]
    metric = f"mpjpe_mm_{head['aggregation']}"
    value = float(head["p1_mm"])
    linked = {metric: value}
    if "pck" in head:
        linked |= {f"pck_{head['aggregation']}": float(head["pck"]),
                   f"auc_{head['aggregation']}": float(head["auc"])}
    record = {"event": "register", "checkpoint": str(paths.best.resolve()),
              "name": model_name(params),
              "tags": version_tags(params, root, test, metrics, paths.best),
              "metric": metric, "value": value, "metrics": linked}
    why = "MLflow is offline (see the warning above)"
    if tracker.run_id is None and not tracker.warned:
        why = "tracking.enabled is false"
    if tracker.run_id is not None:
        try:
            out = register_model(
                tracking_uri=tracker.uri, run_id=tracker.run_id, checkpoint=paths.best,
                name=record["name"], tags=record["tags"], metric=metric, value=value,
                metrics=linked,
            )
        except Exception as exc:  # an outage, a full disk, a lock timeout: never stop the stage
            tracker.go_offline(exc)
            why = "MLflow failed during registration (see the warning above)"
        else:
            role = "champion" if out["champion"] else "challenger"
            print(f"evaluate: registered {out['name']} version {out['version']} as {role} "
                  f"({out['reason']}); serve it: mlflow models serve -m "
                  f"models:/{out['name']}@{role}")
            return out
    tracker.write_offline(record)
    print(f"evaluate: model not registered: {why}; `ddhpose tracking sync` registers it from "
          f"{tracker.offline_path}")
    return None

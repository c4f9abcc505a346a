"""The MLflow model registry: resolve ``models:/`` and ``runs:/`` URIs to checkpoints, and register
evaluated models with the ``challenger`` / ``champion`` aliases.

The alias rule (also in the README). Every version the evaluate stage registers as
``ddhpose-<dataset>`` gets the alias ``challenger``. ``champion`` moves to the new version when
there is no champion, or when the champion was scored on the same test data (equal tag
``test_data_fingerprint``) with the same headline metric and the new version's headline value is
lower (MPJPE in mm, lower is better; strictly lower, so a tie keeps the old champion). Versions
scored on different test data are never compared: the champion stays, and the new version is only
the challenger.

mlflow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ddhpose.errors import DDHPoseError

CHALLENGER = "challenger"
CHAMPION = "champion"
CHECKPOINT_ARTIFACT = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"  # the file name of the artifact inside a logged model
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-fA-F]+)(?:/(?P<path>.*))?$")


class RegistryError(DDHPoseError):
    """The registry could not resolve or record a model (names the URI and the cause)."""


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else the project's ``sqlite:///<root>/mlflow.db``."""
    from ddhpose.pipeline.run_state import tracking_uri

    return tracking_uri(Path.cwd() if root is None else root)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve_model_uri(uri: str, *, tracking_uri: str) -> dict[str, Any]:
    """What a ``models:/`` or ``runs:/`` URI points to now: ``{kind, uri, name, version, run_id}``.

    Raises :class:`RegistryError` naming the URI (unknown model, alias, version or run).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    m = _MODELS_URI.match(uri)
    r = _RUNS_URI.match(uri)
    if not m and not r:
        raise RegistryError(f"{uri}: not a models:/<name>@<alias>, models:/<name>/<version> or "
                            "runs:/<run id>/<path> URI")
    try:
        if m:
            name = m["name"]
            mv = (client.get_model_version_by_alias(name, m["alias"]) if m["alias"]
                  else client.get_model_version(name, m["version"]))
            return {"kind": "registered_model", "uri": uri, "name": name,
                    "version": str(mv.version), "run_id": mv.run_id,
                    "alias": m["alias"] or None}
        client.get_run(r["run_id"])
        return {"kind": "run", "uri": uri, "run_id": r["run_id"], "path": r["path"] or ""}
    except MlflowException as exc:
        raise RegistryError(f"{uri}: {_first_line(exc)} (tracking URI {tracking_uri})") from exc


def download_checkpoint(uri: str, work_dir: Path, *, root: Path | None = None,
                        tracking_uri: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Download the checkpoint ``uri`` names into ``work_dir``: ``(file, record)``.

    ``uri`` may name a ddhpose MLflow model (its ``checkpoint`` artifact is used) or, with
    ``runs:/``, a checkpoint file logged in a run. The record holds the resolved version / run id.
    Errors are :class:`RegistryError` naming the URI.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    uri_tracking = tracking_uri or default_tracking_uri(root)
    try:
        record = resolve_model_uri(uri, tracking_uri=uri_tracking)
        # a registered alias is pinned to the version just resolved (it may move meanwhile)
        pinned = (f"models:/{record['name']}/{record['version']}"
                  if record["kind"] == "registered_model" else uri)
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=pinned, dst_path=str(work_dir), tracking_uri=uri_tracking))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"{uri}: download failed: {_first_line(exc)}") from exc
    return checkpoint_in(local, uri), record


def checkpoint_in(local: Path, uri: str = "") -> Path:
    """The checkpoint file of a downloaded ddhpose model directory (or ``local`` if a file)."""
    if local.is_file():
        return local
    candidate = local / "artifacts" / CHECKPOINT_FILE
    if not candidate.is_file():
        raise RegistryError(f"{uri or local}: not a ddhpose model (no artifacts/{CHECKPOINT_FILE} "
                            "in it)")
    return candidate


# --- registering evaluated models -----------------------------------------------------------------


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
    ``champion`` by :func:`alias_decision`. ``metrics`` are linked to the logged model.

    Returns ``{name, version, model_uri, champion, reason}``.
    """
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():  # MLflow suggests type hints at class definition: the
        warnings.simplefilter("ignore", UserWarning)  # model's signature is given explicitly
        from ddhpose.pipeline.served_model import log_model

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with mlflow.start_run(run_id=run_id):
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

"""The MLflow model registry, read side: resolve ``models:/`` and ``runs:/`` URIs to a
checkpoint file (for ``model.init`` and ``ddhpose infer --checkpoint``). Registering models and
the ``challenger`` / ``champion`` rule live in :mod:`ddhpose.registry.register`.

mlflow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ddhpose.errors import DDHPoseError

CHECKPOINT_ARTIFACT = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"  # the file name of the artifact inside a logged model
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-fA-F]+)(?:/(?P<path>.*))?$")


class RegistryError(DDHPoseError):
    """The registry could not resolve or record a model (names the URI and the cause)."""


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else the project's ``sqlite:///<root>/mlflow.db``."""
    from ddhpose.tracking.run_state import tracking_uri

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

"""The MLflow model registry, read side: resolve ``models:/`` and ``runs:/`` URIs to a
checkpoint file (for ``model.init`` and ``ddhpose infer --checkpoint``). Registering models and
the ``challenger`` / ``champion`` rule live in :mod:`ddhpose.registry.register`.

Resolving and downloading run under :func:`bounded_mlflow`: MLflow's HTTP retries are capped as
for the stages' logging (:data:`ddhpose.tracking.tracker.HTTP_ENV_DEFAULTS`: no retries, 5 s
per request), so a ``models:/`` URI with the tracking server down fails in seconds, not minutes,
with one line naming the URI, the tracking URI and the cause (``connection refused``); and
MLflow's artifact download bar (one step per file of the logged model, about 110) is off. Both
only for the call: the environment is restored afterwards, and a value the user set for
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` or
``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is kept. A ``sqlite:///`` tracking URI whose file does
not exist is an error (nothing is registered there), and no empty store is created.

mlflow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddhpose.errors import DDHPoseError, one_line

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


# what a failed HTTP request says -> the cause in words
_NET_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("Temporary failure in name resolution", "unknown host (name resolution failed)"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("Connection reset", "connection reset"),
    ("Connection aborted", "connection aborted"),
    ("timed out", "no answer in time (timed out)"),
)


def _network_cause(exc: BaseException) -> str | None:
    """The network failure behind ``exc`` in words, or None when it is not one."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return next((words for needle, words in _NET_CAUSES if needle in text), None)


def _failure(uri: str, tracking_uri: str, exc: BaseException, doing: str = "") -> RegistryError:
    """One line: the URI, the tracking URI and the cause."""
    cause = _network_cause(exc)
    if cause:
        return RegistryError(f"{uri}: cannot reach the MLflow tracking server {tracking_uri}: "
                             f"{cause} (start the server, or point MLFLOW_TRACKING_URI at one)")
    return RegistryError(f"{uri}: {doing}{one_line(exc, first=True)} (tracking URI {tracking_uri})")


@contextlib.contextmanager
def bounded_mlflow() -> Iterator[None]:
    """MLflow's HTTP retries capped as for the stages' logging and its artifact download bar off,
    for the block only (values the user set are kept; the environment is restored after)."""
    from ddhpose.tracking.tracker import HTTP_ENV_DEFAULTS

    settings = {**HTTP_ENV_DEFAULTS, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved = {key: os.environ.get(key) for key in settings}
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _check_store(uri: str, tracking_uri: str) -> None:
    """A ``sqlite:///`` store must exist: reading it would otherwise create an empty one."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])
        if not path.exists():
            raise RegistryError(f"{uri}: no MLflow store at {path} (tracking URI {tracking_uri}; "
                                "set MLFLOW_TRACKING_URI to the store or server holding the "
                                "model)")


def resolve_model_uri(uri: str, *, tracking_uri: str) -> dict[str, Any]:
    """What a ``models:/`` or ``runs:/`` URI points to now: ``{kind, uri, name, version, run_id}``.

    Raises :class:`RegistryError` naming the URI (unknown model, alias, version or run; a
    tracking server that cannot be reached, within seconds: see :func:`bounded_mlflow`).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    m = _MODELS_URI.match(uri)
    r = _RUNS_URI.match(uri)
    if not m and not r:
        raise RegistryError(f"{uri}: not a models:/<name>@<alias>, models:/<name>/<version> or "
                            "runs:/<run id>/<path> URI")
    _check_store(uri, tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        with bounded_mlflow():
            if m:
                name = m["name"]
                mv = (client.get_model_version_by_alias(name, m["alias"]) if m["alias"]
                      else client.get_model_version(name, m["version"]))
                return {"kind": "registered_model", "uri": uri, "name": name,
                        "version": str(mv.version), "run_id": mv.run_id,
                        "alias": m["alias"] or None}
            client.get_run(r["run_id"])
            return {"kind": "run", "uri": uri, "run_id": r["run_id"], "path": r["path"] or ""}
    except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
        raise _failure(uri, tracking_uri, exc) from exc


def download_checkpoint(uri: str, work_dir: Path, *, root: Path | None = None,
                        tracking_uri: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Download the checkpoint ``uri`` names into ``work_dir``: ``(file, record)``.

    ``uri`` may name a ddhpose MLflow model (its ``checkpoint`` artifact is used) or, with
    ``runs:/``, a checkpoint file logged in a run. The record holds the resolved version / run id.
    Errors are :class:`RegistryError` naming the URI (one line; fast when the server is down).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    uri_tracking = tracking_uri or default_tracking_uri(root)
    record = resolve_model_uri(uri, tracking_uri=uri_tracking)
    # a registered alias is pinned to the version just resolved (it may move meanwhile)
    pinned = (f"models:/{record['name']}/{record['version']}"
              if record["kind"] == "registered_model" else uri)
    try:
        with bounded_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=pinned, dst_path=str(work_dir), tracking_uri=uri_tracking))
    except (MlflowException, OSError) as exc:
        raise _failure(uri, uri_tracking, exc, "download failed: ") from exc
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

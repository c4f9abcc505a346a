"""The :class:`Tracker` a stage logs through: MLflow calls, or offline records when MLflow is
unavailable. Which runs a stage opens and joins: :mod:`ddhpose.tracking.runs`.

Outages: the first MLflow call happens when the stage starts. If it fails (server unreachable,
bad URI, broken store), the stage still runs: ONE warning line goes to stderr naming the URI and
the cause, and everything (params, metrics with steps, tags, artifact paths) is appended as JSON
lines to ``<project root>/reports/tracking_offline/<stage>.jsonl``. A failure later in the stage
switches to the same offline log (with the same single warning), its ``offline`` record naming
the run, its parent and the experiment so that ``ddhpose tracking sync`` continues that run; the
evaluate stage's model registration falls back the same way
(:mod:`ddhpose.registry.register`). A full disk is named as such in the warning.
``tracking.enabled: false`` logs offline without a warning. In a stage process MLflow's own
loggers (and alembic's, SQLAlchemy's) print WARNING and above only, and MLflow's traceback for
each SQL error is silenced (:func:`quiet_mlflow_logs`): the warning line is the one line.
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (0) and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (5 s) are set in
``os.environ`` unless the user set them.

A SQLite store that cannot be written (see :mod:`ddhpose.tracking.sqlite_store`) counts as
unavailable at once, before MLflow would retry for minutes; with a SQLite store every group of
MLflow calls holds the store's writer lock, so concurrent pipelines do not collide. The offline
records and the default SQLite store live in ``DVC_ROOT`` when DVC sets it (a queued experiment
logs to the repository it was queued from; :func:`ddhpose.tracking.run_state.tracking_home`).
Replay offline records with ``ddhpose tracking sync`` (:mod:`ddhpose.tracking.sync`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ddhpose.config.schema import Params
from ddhpose.errors import message_lines, one_line, os_error_line
from ddhpose.tracking.sqlite_store import store_lock

HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
_BATCH = 100  # MLflow accepts at most 100 params / tags per log_batch request
# MLflow error codes that mean "the caller passed bad data", not "the server is unavailable".
_CALLER_ERRORS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


# --- small helpers --------------------------------------------------------------------------------


def experiment_name(params: Params) -> str:
    return f"{params.tracking.experiment_prefix}-{params.data.dataset}"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


_NET_CAUSES = ("Connection refused", "Name or service not known", "timed out", "No route to host",
               "Temporary failure in name resolution", "Connection reset", "Connection aborted")


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; network failures shortened to the request and the cause,
    a full disk (an OS error anywhere in the chain, or SQLite's) named as such."""
    text = one_line(exc) if message_lines(exc) else "no message"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _DISK_ERRNOS:
            return f"{type(cause).__name__}: {os_error_line(cause)}"
        cause = cause.__cause__ or cause.__context__
    if "database or disk is full" in text:
        return f"{type(exc).__name__}: SQLite: database or disk is full (disk full)"
    for cause in _NET_CAUSES:
        if cause in text:
            head = text.split(" failed with exception")[0]
            return f"{type(exc).__name__}: {head[:200]} failed: {cause}"
    return f"{type(exc).__name__}: {text[:300]}"


def _is_caller_error(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in _CALLER_ERRORS


# --- the tracker ----------------------------------------------------------------------------------


class Tracker:
    """What a stage logs through. ``mode`` is "mlflow", "offline" or "noop" (DDP rank != 0).

    In "mlflow" mode every call goes to the child run (``also_parent`` metrics to the parent
    too); the first failing call prints one warning and switches to "offline" for the rest of the
    stage, that call included.
    """

    def __init__(self, stage: str, mode: str, offline_path: Path | None = None, uri: str = "",
                 client: Any = None, run_id: str | None = None,
                 parent_run_id: str | None = None, experiment: str | None = None) -> None:
        self.stage = stage
        self.mode = mode
        self.experiment = experiment
        self.offline_path = offline_path
        self.uri = uri
        self._client = client
        self._run_id = run_id
        self._parent_run_id = parent_run_id
        self._params: dict[str, str] = {}
        self.warned = False
        self._locked = False

    @contextlib.contextmanager
    def store(self) -> Iterator[None]:
        """Hold the SQLite store's writer lock (re-entrant; a no-op for a server)."""
        if self._locked or self.mode != "mlflow":
            yield
            return
        with store_lock(self.uri):
            self._locked = True
            try:
                yield
            finally:
                self._locked = False

    @property
    def run_id(self) -> str | None:
        """The child (stage) run id; None offline or on a non-zero DDP rank."""
        return self._run_id if self.mode == "mlflow" else None

    @property
    def parent_run_id(self) -> str | None:
        return self._parent_run_id if self.mode == "mlflow" else None

    # public logging API

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params of this stage execution on the child run. Re-logging a key with the same value
        is a no-op; with a different value it raises ValueError (MLflow params are immutable)."""
        new = {}
        for k, v in params.items():
            sv = str(v)
            if k in self._params:
                if self._params[k] != sv:
                    raise ValueError(f"tracking: param {k!r} already logged for stage "
                                     f"{self.stage!r} as {self._params[k]!r}, not {sv!r}")
                continue
            new[k] = sv
        if not new:
            return
        self._params.update(new)
        self._dispatch({"event": "params", "scope": "child", "data": new},
                       lambda: self._log_batch(self._run_id, params=new))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None,
                    also_parent: bool = False) -> None:
        values = {}
        for k, v in metrics.items():
            try:
                values[str(k)] = float(v)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"tracking: metric {k!r} is not a number: {v!r}") from exc
        if not values:
            return
        ts = int(time.time() * 1000)
        runs = [self._run_id, self._parent_run_id] if also_parent else [self._run_id]

        def send() -> None:
            for run in runs:
                self._log_batch(run, metrics=values, step=step or 0, timestamp_ms=ts)

        scope = "child+parent" if also_parent else "child"
        self._dispatch({"event": "metrics", "scope": scope, "step": step, "data": values}, send)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        data = {str(k): str(v) for k, v in tags.items()}
        if data:
            self._dispatch({"event": "tags", "scope": "child", "data": data},
                           lambda: self._log_batch(self._run_id, tags=data))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if self.mode != "noop" and not path.is_file():
            raise FileNotFoundError(f"tracking: artifact {path} is not a file")
        self._dispatch(
            {"event": "artifact", "path": str(path.resolve()), "artifact_path": artifact_path,
             "bytes": path.stat().st_size if self.mode != "noop" else None},
            lambda: self._client.log_artifact(self._run_id, str(path), artifact_path),
        )

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        directory = Path(directory)
        if self.mode == "noop":
            return
        if not directory.is_dir():
            raise FileNotFoundError(f"tracking: artifact directory {directory} does not exist")
        files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
        self._dispatch(
            {"event": "artifacts", "path": str(directory.resolve()),
             "artifact_path": artifact_path, "files": files},
            lambda: self._client.log_artifacts(self._run_id, str(directory), artifact_path),
        )

    # internals

    def _log_batch(self, run_id: str | None, params: Mapping[str, str] | None = None,
                   metrics: Mapping[str, float] | None = None,
                   tags: Mapping[str, str] | None = None, step: int = 0,
                   timestamp_ms: int | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        ts = timestamp_ms or int(time.time() * 1000)
        items: list[Any] = [Param(k, v) for k, v in (params or {}).items()]
        items += [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, len(items), _BATCH):
            chunk = items[i:i + _BATCH]
            self._client.log_batch(
                run_id, params=[x for x in chunk if isinstance(x, Param)],
                tags=[x for x in chunk if isinstance(x, RunTag)],
            )
        if metrics:
            self._client.log_batch(
                run_id, metrics=[Metric(k, v, ts, step) for k, v in metrics.items()]
            )

    def _dispatch(self, record: dict[str, Any], send: Callable[[], None]) -> None:
        if self.mode == "noop":
            return
        if self.mode == "mlflow":
            try:
                with self.store():
                    send()
                return
            except Exception as exc:
                if _is_caller_error(exc):
                    raise
                self.go_offline(exc)
        self.write_offline(record)

    def go_offline(self, exc: BaseException | None, reason: str | None = None) -> None:
        """Switch to offline logging; warn once (unless ``exc`` is None: tracking disabled)."""
        if exc is not None and not self.warned:
            self.warned = True
            print(f"ddhpose tracking: warning: MLflow at {self.uri} unavailable ({_one_line(exc)});"
                  f" stage '{self.stage}' logs offline to {self.offline_path}", file=sys.stderr,
                  flush=True)
        was = self.mode
        self.mode = "offline"
        self.write_offline({
            "event": "offline", "reason": reason or (_one_line(exc) if exc else "unknown"),
            "tracking_uri": self.uri, "run_id": self._run_id if was == "mlflow" else None,
            "parent_run_id": self._parent_run_id, "experiment": self.experiment,
        })

    def write_offline(self, record: Mapping[str, Any]) -> None:
        assert self.offline_path is not None
        line = {"time": _now_iso(), "stage": self.stage, **record}
        self.offline_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.offline_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    def finish(self, status: str, error: BaseException | None = None) -> None:
        """End the child run with ``status`` and mark the parent; never raises on outages."""
        if self.mode == "noop":
            return
        if self.mode == "mlflow":
            try:
                with self.store():
                    if error is not None:
                        self._log_batch(self._run_id, tags={"ddhpose.error": _one_line(error)})
                    self._client.set_terminated(self._run_id, status)
                    self._client.set_terminated(self._parent_run_id,
                                                "FINISHED" if status == "FINISHED" else "FAILED")
                return
            except Exception as exc:
                self.go_offline(exc)
        self.write_offline({"event": "end", "status": status,
                            "error": _one_line(error) if error else None})


# --- MLflow's own logging -------------------------------------------------------------------------

def quiet_mlflow_logs() -> None:
    """Only WARNING and above from MLflow's and its store's loggers in this process (MLflow logs
    its schema migrations, artifact uploads and retries at INFO: 150 lines that bury a stage's
    one-line error). MLflow's SQL store also logs every SQLite error (a full disk: one per call)
    with its traceback at ERROR before raising it to the caller, which reports it in one line:
    that logger is silenced."""
    import logging

    import mlflow  # noqa: F401  (it configures its loggers on import: set ours after)

    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

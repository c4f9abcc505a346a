"""MLflow run handling for the multi-process DVC pipeline (the only module that imports mlflow).

Structure: one experiment per dataset, ``<tracking.experiment_prefix>-<data.dataset>``; one
*parent* run per pipeline execution that every stage joins; one nested *child* run (named after
the stage) per stage execution. The parent gets all flat params once, when it is created (MLflow
params are immutable); each child gets the flat params it actually ran with, and a tag
``ddhpose.params_changed`` listing keys that differ from the parent's.

Which parent a stage joins. ``<project root>/.ddhpose/mlflow_run.json`` (not a DVC output)
records the parent run id, tracking URI, experiment id and the rank of the last stage that
logged. Ranks: fetch_data 0, preprocess 1, train 2, sample 3, evaluate 4, export_mat 5.

- A stage of rank r <= 2 starts a NEW parent when there is no state, the URI or experiment
  differ, the stored parent run is missing or deleted, or the stored last rank is >= r (the
  pipeline is being re-executed from upstream: a train re-run starts a new parent).
  Otherwise it joins the stored parent.
- A stage of rank r >= 3 always joins the stored parent (creating one if there is none usable),
  so re-running only ``evaluate`` attaches to the run of the model it evaluates.

Parent tags: ``git.commit`` / ``git.dirty`` (from ``git``, when available), ``dataset``, and
``dvc.lock.<stage>`` = short hash of that stage's ``dvc.lock`` entry for every stage upstream of
the one starting (DVC writes a stage's own entry only after its command exits, so the entries of
the current and later stages would be stale; the last stage's entry is therefore never tagged).

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
Replay offline records with ``ddhpose tracking sync`` (:mod:`ddhpose.tracking.sync`).

Killed stages: each child run carries its process's host, pid and start time; when a stage
starts it marks KILLED every RUNNING stage run of its experiment whose process on this host is
gone (SIGKILL, power loss), and that run's parent if still RUNNING. Parent runs carry
``dvc.exp_name`` inside ``dvc exp run``.

Distributed training: only rank 0 (``torch.distributed`` rank, else ``RANK``) logs; other ranks
get a no-op tracker and never touch the state file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ddhpose.config.schema import Params
from ddhpose.errors import message_lines, one_line, os_error_line
from ddhpose.io import write_json
from ddhpose.tracking.run_state import (
    OFFLINE_DIR,
    STAGE_RANKS,
    STATE_FILE,
    artifact_location,
    distributed_rank,
    dvc_experiment_tags,
    dvc_lock_tags,
    git_info,
    needs_new_parent,
    process_is_gone,
    process_tags,
    read_state,
    tracking_home,
    tracking_uri,
)
from ddhpose.tracking.sqlite_store import store_lock, store_problem

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


# --- stage runs -----------------------------------------------------------------------------------


@contextlib.contextmanager
def stage_run(stage: str, params: Params, project_root: Path) -> Iterator[Tracker]:
    """Join/start the pipeline's parent run, open the stage's child run, yield its Tracker.

    An exception inside the block ends the child FAILED (KILLED on Ctrl-C) and propagates.
    """
    if stage not in STAGE_RANKS:
        raise ValueError(f"tracking: unknown stage {stage!r} (known: {', '.join(STAGE_RANKS)})")
    root = Path(project_root).resolve()
    offline_path = tracking_home(root) / OFFLINE_DIR / f"{stage}.jsonl"
    if distributed_rank() != 0:
        tracker = Tracker(stage, "noop")
    elif not params.tracking.enabled:
        tracker = Tracker(stage, "offline", offline_path, uri="")
        _start_offline(tracker, params, "tracking.enabled is false")
    else:
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        tracker = _start_mlflow(stage, params, root, tracking_uri(root), offline_path)
    try:
        yield tracker
    except BaseException as exc:
        tracker.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", exc)
        raise
    tracker.finish("FINISHED")


def _start_offline(tracker: Tracker, params: Params, reason: str) -> None:
    tracker.write_offline({"event": "start", "rank": STAGE_RANKS[tracker.stage], "reason": reason,
                           "experiment": experiment_name(params)})
    tracker.write_offline({"event": "params", "scope": "parent+child",
                           "data": {k: str(v) for k, v in params.to_flat_dict().items()}})


def _start_mlflow(stage: str, params: Params, root: Path, uri: str, offline_path: Path) -> Tracker:
    tracker = Tracker(stage, "mlflow", offline_path, uri=uri, experiment=experiment_name(params))
    rank = STAGE_RANKS[stage]
    state = read_state(root)
    try:
        quiet_mlflow_logs()
        problem = store_problem(uri)
        if problem:
            raise StoreUnwritable(problem)
        with tracker.store():
            _open_runs(tracker, params, root, uri, rank, state)
    except Exception as exc:
        # Unless this call already recorded its parent, keep the local part of the rule: a
        # re-run from upstream must not be joined by later stages.
        if tracker._parent_run_id is not None:
            state = None
        elif state is not None and rank <= 2 and int(state.get("last_rank", -1)) >= rank:
            state = {**state, "parent_run_id": None}
        if state is not None:
            with contextlib.suppress(OSError):
                write_json(root / STATE_FILE, {**state, "last_rank": rank, "last_stage": stage,
                                                "updated": _now_iso()})
        tracker.go_offline(exc)
        _start_offline(tracker, params, f"MLflow unavailable: {_one_line(exc)}")
    return tracker


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


class StoreUnwritable(OSError):
    """The local SQLite store cannot be written (checked before MLflow retries for minutes)."""


def close_killed_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the stage runs of this machine left RUNNING by a process that is gone
    (SIGKILL, power loss), and their parents; return the run ids closed."""
    host = process_tags()["ddhpose.host"]
    found = client.search_runs(
        [experiment_id], max_results=200,
        filter_string=f"attributes.status = 'RUNNING' and tags.`ddhpose.host` = '{host}'",
    )
    closed: list[str] = []
    for run in found:
        tags = run.data.tags
        if "ddhpose.stage" not in tags or not process_is_gone(tags):
            continue
        note = (f"process {tags.get('ddhpose.pid')} on {host} ended without closing this run; "
                f"marked KILLED at {_now_iso()}")
        client.set_tag(run.info.run_id, "ddhpose.error", note)
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
        parent = tags.get("mlflow.parentRunId")
        if parent:
            with contextlib.suppress(Exception):
                if client.get_run(parent).info.status == "RUNNING":
                    client.set_terminated(parent, "KILLED")
                    closed.append(parent)
    return closed


def _open_runs(tracker: Tracker, params: Params, root: Path, uri: str, rank: int,
               state: dict[str, Any] | None) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(tracking_uri=uri)
    tracker._client = client
    name = experiment_name(params)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        exp_id = client.create_experiment(name, artifact_location=artifact_location(uri, name))
    else:
        exp_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp_id)
    close_killed_runs(client, exp_id)

    parent_run = None
    if state and state.get("parent_run_id") and state.get("tracking_uri") == uri:
        try:
            parent_run = client.get_run(state["parent_run_id"])
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    alive = parent_run is not None and parent_run.info.lifecycle_stage != "deleted"
    flat = {k: str(v) for k, v in params.to_flat_dict().items()}
    git = git_info(root)
    exp_tags = dvc_experiment_tags()
    if needs_new_parent(state, uri, exp_id, rank, alive):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        parent = client.create_run(exp_id, run_name=f"pipeline-{stamp}",
                                   tags={"dataset": params.data.dataset, **git, **exp_tags,
                                         "ddhpose.started_by": tracker.stage})
        parent_id = parent.info.run_id
        tracker._log_batch(parent_id, params=flat)
        changed: list[str] = []
    else:
        assert parent_run is not None
        parent_id = parent_run.info.run_id
        client.update_run(parent_id, status="RUNNING")
        if exp_tags:
            tracker._log_batch(parent_id, tags=exp_tags)
        old = parent_run.data.params
        changed = sorted(k for k, v in flat.items() if k in old and old[k] != v)
    tracker._parent_run_id = parent_id
    write_json(root / STATE_FILE, {
        "parent_run_id": parent_id, "tracking_uri": uri, "experiment_id": str(exp_id),
        "experiment_name": name, "last_rank": rank, "last_stage": tracker.stage,
        "updated": _now_iso(),
    })
    lock_tags = dvc_lock_tags(root, rank)
    if lock_tags:
        tracker._log_batch(parent_id, tags=lock_tags)

    child_tags = {MLFLOW_PARENT_RUN_ID: parent_id, "ddhpose.stage": tracker.stage,
                  "ddhpose.stage_rank": str(rank), "dataset": params.data.dataset, **git,
                  **exp_tags, **process_tags()}
    if changed:
        child_tags["ddhpose.params_changed"] = ",".join(changed)[:5000]
    child = client.create_run(exp_id, run_name=tracker.stage, tags=child_tags)
    tracker._run_id = child.info.run_id
    tracker._params.update(flat)
    tracker._log_batch(tracker._run_id, params=flat)

"""The MLflow runs of a pipeline stage: :func:`stage_run` opens (or joins) them and hands the stage
its :class:`ddhpose.tracking.tracker.Tracker`.

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
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddhpose.config.schema import Params
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
from ddhpose.tracking.sqlite_store import store_problem
from ddhpose.tracking.tracker import (
    HTTP_ENV_DEFAULTS,
    Tracker,
    _now_iso,
    _one_line,
    experiment_name,
    quiet_mlflow_logs,
)


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

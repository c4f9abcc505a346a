"""Replay the offline tracking records (``reports/tracking_offline/<stage>.jsonl``) into MLflow.

A stage that could not reach MLflow appended JSON lines (see :mod:`ddhpose.tracking.tracker`):
``offline`` (why, and the run ids if the stage had started online), ``start`` (experiment),
``params``, ``metrics`` (with step and time), ``tags``, ``artifact`` / ``artifacts`` (local paths)
and ``end`` (status). One stage execution is one *segment* of a file: it begins at an ``offline``
or ``start`` event (a ``start`` right after an ``offline`` belongs to it) and runs to its ``end``.

Where a segment goes. A stage that went offline after opening its run online (the server died
mid-stage, the store's disk filled up) recorded that run's id: when the run exists in the target
store, the segment *continues* it (params it lacks, metrics, tags, artifacts, the model) and
ends it with the recorded status (no ``end`` record: KILLED); the parent run, if still RUNNING
with no other running stage, ends FINISHED (FAILED unless the stage finished). Any other segment
becomes a new MLflow run (named ``<stage> (synced)``, tagged ``ddhpose.stage``), nested under the
segment's parent run when that exists in the store, in the recorded experiment, which sync
creates when missing with its artifacts where the tracker puts them (next to a SQLite database;
a server's own default otherwise) - never in the current directory.

Registration: a ``register`` record (the evaluate stage could not register its model) is
registered into that run by :func:`ddhpose.registry.register.register_model`, with the
same alias rule, when the recorded checkpoint is still there with the recorded sha256; otherwise
the run gets the tag ``ddhpose.offline_unregistered`` and sync prints why.

Exactly once: a new run is created with the tag ``ddhpose.offline_pending=<record id>``; every
synced run gets ``ddhpose.offline_record=<record id>`` only when everything was logged, and
``reports/tracking_offline/synced.json`` (written by sync) records the run per tracking URI.
A later sync skips records already synced, and deletes half-synced new runs (an interrupted sync)
before replaying them again. A synced run that the user deleted, or a stage's own run deleted
on the server, is never replayed or resurrected: sync prints a line saying so and skips it. The
record id is a hash of the segment's file name and first line; the record files are never
changed. With a SQLite store every segment is synced holding the store's writer lock.
Artifacts are uploaded from their recorded paths as they are now; a missing file is counted in
the tag ``ddhpose.offline_missing_artifacts``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddhpose.errors import DDHPoseError, os_error_line
from ddhpose.io import file_sha256, write_json
from ddhpose.tracking.run_state import OFFLINE_DIR, artifact_location
from ddhpose.tracking.sqlite_store import store_lock

FALLBACK_EXPERIMENT = "ddhpose-offline"
LEDGER = "synced.json"  # in the offline folder: {tracking URI: {record id: run id}}
_BATCH = 100


class SyncError(DDHPoseError):
    """An offline record file cannot be read."""


@dataclass
class Segment:
    """One stage execution recorded offline: ``records`` in file order."""

    path: Path
    line: int  # 1-based line of the first record
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def record_id(self) -> str:
        first = json.dumps(self.records[0], sort_keys=True)
        return hashlib.sha256(f"{self.path.name}\n{first}".encode()).hexdigest()[:20]

    @property
    def stage(self) -> str:
        return str(self.records[0].get("stage") or self.path.stem)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def first(self, event: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("event") == event), None)


def read_segments(path: Path) -> Iterator[Segment]:
    """The segments of one ``<stage>.jsonl`` file (see the module docstring)."""
    current: Segment | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            if number == len(lines):
                continue  # a line cut short by a crash: the rest of the segment is still good
            raise SyncError(f"{path}: line {number} is not JSON") from None
        if not isinstance(record, dict):
            raise SyncError(f"{path}: line {number} is not a JSON object")
        event = record.get("event")
        joins_offline = (event == "start" and current is not None
                         and [r.get("event") for r in current.records] == ["offline"])
        if event in ("offline", "start") and not joins_offline:
            if current is not None:
                yield current
            current = Segment(path, number)
        if current is None:  # records before any start: keep them as their own segment
            current = Segment(path, number)
        current.records.append(record)
    if current is not None:
        yield current


def _ms(iso: Any) -> int | None:
    try:
        return int(_dt.datetime.fromisoformat(str(iso)).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


#: registers a model version and moves its aliases: :func:`ddhpose.registry.register.register_model`
#: (passed in by the ``ddhpose tracking sync`` command: bookkeeping does not import the registry)
RegisterFn = Callable[..., dict[str, Any]]


def sync_offline(root: Path, uri: str, log: Callable[[str], None] = print,
                 register: RegisterFn | None = None) -> tuple[int, int]:
    """Replay every segment under ``root/reports/tracking_offline`` into the store at ``uri``;
    ``register`` registers the models of ``register`` records (without it they are reported and
    tagged unregistered).

    Returns ``(runs created or continued, segments skipped: already synced or deleted)``.
    """
    from mlflow.tracking import MlflowClient

    folder = Path(root) / OFFLINE_DIR
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    segments = [s for f in files for s in read_segments(f) if s.records]
    if not segments:
        log(f"no offline records in {folder}")
        return 0, 0
    ledger = _read_ledger(folder / LEDGER)
    synced = ledger.setdefault(uri, {})
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    created = skipped = 0
    for seg in segments:
        with store_lock(uri):
            run_id = _sync_segment(client, uri, seg, synced.get(seg.record_id), log, register)
        if run_id is None:
            skipped += 1
            continue
        created += 1
        synced[seg.record_id] = run_id
        try:
            write_json(folder / LEDGER, ledger)
        except OSError as exc:
            raise SyncError(f"{os_error_line(exc)} (the record {seg.where} is synced to run "
                            f"{run_id} and tagged so; the next sync finds it)") from exc
    return created, skipped


def _read_ledger(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SyncError(f"{path}: cannot read ({exc.__class__.__name__}: {exc}); move it aside "
                        "to sync again (runs already synced are found by their tags)") from exc
    if not isinstance(data, dict):
        raise SyncError(f"{path}: not a JSON object; move it aside to sync again")
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}


def _get_run(client: Any, run_id: str) -> Any:
    """The run, or None when the store does not have it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _sync_segment(client: Any, uri: str, seg: Segment, ledger_run: str | None,
                  log: Callable[[str], None], register: RegisterFn | None) -> str | None:
    """Sync one segment; the run it went to, or None when skipped (see the module doc)."""
    what = f"{seg.where}: stage '{seg.stage}'"
    if ledger_run:
        run = _get_run(client, ledger_run)
        if run is None or run.info.lifecycle_stage == "deleted":
            state = "no longer in the store" if run is None else "deleted on the server"
            log(f"{what} was synced to run {ledger_run}, {state}: not replayed")
        return None
    online = (seg.first("offline") or {}).get("run_id")
    run = _get_run(client, str(online)) if online else None
    if run is not None:
        if run.info.lifecycle_stage == "deleted":
            log(f"{what} ran in run {online}, deleted on the server: not replayed")
            return None
        if run.data.tags.get("ddhpose.offline_record") == seg.record_id:
            return None
        _replay(client, uri, seg, run.info.experiment_id, run, log, register)
        log(f"{what} -> continued run {online} ({run.info.status} -> "
            f"{client.get_run(online).info.status})")
        return str(online)
    exp_id = _experiment(client, uri, seg)
    done, pending = _existing(client, exp_id, seg.record_id)
    if done is not None:
        if done.info.lifecycle_stage == "deleted":
            log(f"{what} was synced to run {done.info.run_id}, deleted on the server: "
                "not replayed")
        return None
    for run_id in pending:  # an interrupted earlier sync: start that record over
        client.delete_run(run_id)
    run_id = _replay(client, uri, seg, exp_id, None, log, register)
    log(f"{what} -> run {run_id}")
    return run_id


def _experiment(client: Any, uri: str, seg: Segment) -> str:
    start = seg.first("start") or seg.first("offline") or {}
    name = str(start.get("experiment") or FALLBACK_EXPERIMENT)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _existing(client: Any, exp_id: str, record_id: str) -> tuple[Any, list[str]]:
    """The run this record was synced to (deleted ones included), else the half-synced ones."""
    from mlflow.entities import ViewType

    done = client.search_runs(
        [exp_id], filter_string=f"tags.`ddhpose.offline_record` = '{record_id}'",
        run_view_type=ViewType.ALL, max_results=1)
    if done:
        return done[0], []
    pending = client.search_runs(
        [exp_id], filter_string=f"tags.`ddhpose.offline_pending` = '{record_id}'")
    return None, [r.info.run_id for r in pending]


def _parent_in_store(client: Any, parent: Any) -> str | None:
    if not parent:
        return None
    try:
        run = client.get_run(str(parent))
    except Exception:
        return None
    return str(parent) if run.info.lifecycle_stage != "deleted" else None


def _replay(client: Any, uri: str, seg: Segment, exp_id: str, run: Any,
            log: Callable[[str], None], register: RegisterFn | None) -> str:
    """Log the segment into ``run`` (continued) or a new run in ``exp_id``; end it."""
    from mlflow.entities import Metric, Param, RunTag

    offline = seg.first("offline") or {}
    tags = {"ddhpose.offline_source": seg.where}
    if offline:
        tags["ddhpose.offline_reason"] = str(offline.get("reason", ""))[:5000]
    if run is None:
        parent = _parent_in_store(client, offline.get("parent_run_id"))
        tags |= {"ddhpose.stage": seg.stage, "ddhpose.offline_pending": seg.record_id}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(exp_id, start_time=_ms(seg.records[0].get("time")),
                                run_name=f"{seg.stage} (synced)", tags=tags)
        existing: dict[str, str] = {}
        new = True
    else:
        parent = _parent_in_store(client, run.data.tags.get("mlflow.parentRunId")
                                  or offline.get("parent_run_id"))
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        existing = dict(run.data.params)
        new = False
    run_id = run.info.run_id
    params: dict[str, str] = {}
    metrics: list[Metric] = []
    parent_metrics: list[Metric] = []
    missing = 0
    status, end_ms = "FINISHED", None
    for rec in seg.records:
        event, ts = rec.get("event"), _ms(rec.get("time")) or 0
        if event == "params":
            for k, v in (rec.get("data") or {}).items():
                params.setdefault(str(k), str(v))  # MLflow params are immutable: first wins
        elif event == "metrics":
            step = int(rec.get("step") or 0)
            for k, v in (rec.get("data") or {}).items():
                m = Metric(str(k), float(v), ts, step)
                metrics.append(m)
                if parent and "parent" in str(rec.get("scope", "")):
                    parent_metrics.append(m)
        elif event == "tags":
            data = {str(k): str(v) for k, v in (rec.get("data") or {}).items()}
            if data:
                client.log_batch(run_id, tags=[RunTag(k, v) for k, v in data.items()])
        elif event == "artifact":
            src = Path(str(rec.get("path", "")))
            if src.is_file():
                client.log_artifact(run_id, str(src), rec.get("artifact_path"))
            else:
                missing += 1
        elif event == "artifacts":
            src = Path(str(rec.get("path", "")))
            if src.is_dir():
                client.log_artifacts(run_id, str(src), rec.get("artifact_path"))
            else:
                missing += len(rec.get("files") or [1])
        elif event == "end":
            status, end_ms = str(rec.get("status") or "FINISHED"), ts or None
    conflicts = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    items = [Param(k, v) for k, v in params.items() if k not in existing]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i:i + _BATCH])
    for target, values in ((run_id, metrics), (parent, parent_metrics)):
        for i in range(0, len(values), 1000):
            client.log_batch(target, metrics=values[i:i + 1000])
    for rec in seg.records:
        if rec.get("event") == "register":
            _register(client, uri, run_id, seg, rec, log, register)
    final = {"ddhpose.offline_record": seg.record_id}
    if missing:
        final["ddhpose.offline_missing_artifacts"] = str(missing)
    if conflicts:  # the run has these params with other values: MLflow keeps the first
        final["ddhpose.offline_param_conflicts"] = ",".join(conflicts)[:5000]
    if seg.first("end") is None:
        status = "KILLED"  # the stage never recorded its end
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in final.items()])
    if new:
        client.delete_tag(run_id, "ddhpose.offline_pending")
    client.set_terminated(run_id, status, end_time=end_ms)
    _end_parent(client, parent, run_id, status)
    return run_id


def _end_parent(client: Any, parent: str | None, child: str, status: str) -> None:
    """End ``parent`` as the stage's tracker would have, if it is RUNNING with no other stage
    running under it."""
    if not parent or client.get_run(parent).info.status != "RUNNING":
        return
    running = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'")
    if any(r.info.run_id != child for r in running):
        return
    client.set_terminated(parent, "FINISHED" if status == "FINISHED" else "FAILED")


def _register(client: Any, uri: str, run_id: str, seg: Segment, rec: dict[str, Any],
              log: Callable[[str], None], register_model: RegisterFn | None) -> None:
    """Register the model of a ``register`` record in ``run_id`` by ``register_model`` (the
    alias rule of :mod:`ddhpose.registry.register`), once."""

    name = str(rec.get("name"))
    tags = {str(k): str(v) for k, v in (rec.get("tags") or {}).items()}
    for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if mv.tags.get("ddhpose.offline_record") == seg.record_id:
            return  # registered by an interrupted earlier sync
    checkpoint = Path(str(rec.get("checkpoint", "")))
    want = tags.get("checkpoint_sha256")
    problem = None
    if register_model is None:
        problem = "this sync was given no registration function (ddhpose tracking sync has one)"
    elif not checkpoint.is_file():
        problem = f"{checkpoint} is gone"
    elif want and file_sha256(checkpoint) != want:
        problem = f"{checkpoint} changed since the stage evaluated it (sha256 {want[:12]}...)"
    if problem:
        log(f"{seg.where}: model {name} not registered: {problem}")
        client.set_tag(run_id, "ddhpose.offline_unregistered", problem)
        return
    out = register_model(
        tracking_uri=uri, run_id=run_id, checkpoint=checkpoint, name=name,
        tags={**tags, "ddhpose.offline_record": seg.record_id}, metric=str(rec.get("metric")),
        value=float(rec.get("value")), metrics=rec.get("metrics") or None,
    )
    role = "champion" if out["champion"] else "challenger"
    log(f"{seg.where}: registered {out['name']} version {out['version']} as {role} "
        f"({out['reason']})")

"""Replay the offline tracking records (``reports/tracking_offline/<stage>.jsonl``) into MLflow.

A stage that could not reach MLflow appended JSON lines (see :mod:`ddhpose.tracking.tracker`):
``offline`` (why, and the run ids if the stage had started online), ``start`` (experiment),
``params``, ``metrics`` (with step and time), ``tags``, ``artifact`` / ``artifacts`` (local paths)
and ``end`` (status). One stage execution is one *segment* of a file: it begins at an ``offline``
or ``start`` event (a ``start`` right after an ``offline`` belongs to it) and runs to its ``end``.

Each segment becomes one MLflow run (named after the stage, tagged ``ddhpose.stage``), nested
under the segment's parent run when that run exists in the target store. Exactly once: a run is
created with the tag ``ddhpose.offline_pending=<record id>`` and gets ``ddhpose.offline_record=
<record id>`` only when everything was logged; a later sync skips records that have a finished
run and deletes half-synced ones (an interrupted sync) before replaying them again. The record id
is a hash of the segment's file name and first line. The record files are never changed.
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

from ddhpose.errors import DDHPoseError
from ddhpose.tracking.run_state import OFFLINE_DIR

FALLBACK_EXPERIMENT = "ddhpose-offline"
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


def sync_offline(root: Path, uri: str, log: Callable[[str], None] = print) -> tuple[int, int]:
    """Replay every segment under ``root/reports/tracking_offline`` into the store at ``uri``.

    Returns ``(runs created, segments already synced)``.
    """
    from mlflow.tracking import MlflowClient

    folder = Path(root) / OFFLINE_DIR
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    segments = [s for f in files for s in read_segments(f) if s.records]
    if not segments:
        log(f"no offline records in {folder}")
        return 0, 0
    client = MlflowClient(tracking_uri=uri)
    created = skipped = 0
    for seg in segments:
        exp_id = _experiment(client, seg)
        done, pending = _existing(client, exp_id, seg.record_id)
        if done:
            skipped += 1
            continue
        for run_id in pending:  # an interrupted earlier sync: start that record over
            client.delete_run(run_id)
        run_id = _replay(client, exp_id, seg)
        created += 1
        log(f"{seg.path.name}:{seg.line}: stage '{seg.stage}' -> run {run_id}")
    return created, skipped


def _experiment(client: Any, seg: Segment) -> str:
    start = seg.first("start") or {}
    name = str(start.get("experiment") or FALLBACK_EXPERIMENT)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _existing(client: Any, exp_id: str, record_id: str) -> tuple[bool, list[str]]:
    done = client.search_runs(
        [exp_id], filter_string=f"tags.`ddhpose.offline_record` = '{record_id}'", max_results=1)
    if done:
        return True, []
    pending = client.search_runs(
        [exp_id], filter_string=f"tags.`ddhpose.offline_pending` = '{record_id}'")
    return False, [r.info.run_id for r in pending]


def _parent_in_store(client: Any, seg: Segment) -> str | None:
    offline = seg.first("offline") or {}
    parent = offline.get("parent_run_id")
    if not parent:
        return None
    try:
        run = client.get_run(parent)
    except Exception:
        return None
    return parent if run.info.lifecycle_stage != "deleted" else None


def _replay(client: Any, exp_id: str, seg: Segment) -> str:
    from mlflow.entities import Metric, Param, RunTag

    parent = _parent_in_store(client, seg)
    tags = {"ddhpose.stage": seg.stage, "ddhpose.offline_pending": seg.record_id,
            "ddhpose.offline_source": f"{seg.path.name}:{seg.line}"}
    offline = seg.first("offline")
    if offline:
        tags["ddhpose.offline_reason"] = str(offline.get("reason", ""))[:5000]
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, start_time=_ms(seg.records[0].get("time")),
                            run_name=f"{seg.stage} (synced)", tags=tags)
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
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i:i + _BATCH])
    for target, values in ((run_id, metrics), (parent, parent_metrics)):
        for i in range(0, len(values), 1000):
            client.log_batch(target, metrics=values[i:i + 1000])
    final = {"ddhpose.offline_record": seg.record_id}
    if missing:
        final["ddhpose.offline_missing_artifacts"] = str(missing)
    if seg.first("end") is None:
        status = "KILLED"  # the stage never recorded its end
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in final.items()])
    client.delete_tag(run_id, "ddhpose.offline_pending")
    client.set_terminated(run_id, status, end_time=end_ms)
    return run_id

"""``ddhpose tracking sync`` against a real SQLite store: stages that ran during an outage are
replayed as proper runs (params, metrics with steps, tags, artifacts, status), exactly once."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from demo_config import demo_params

from ddhpose.cli import main
from ddhpose.tracking.runs import stage_run
from ddhpose.tracking.sync import read_segments

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _outage_stages(monkeypatch, root: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("RANK", raising=False)
    (root / "best.pt").write_bytes(b"weights")
    (root / "tables").mkdir()
    (root / "tables" / "a.csv").write_text("x\n1\n")
    for attempt in range(2):  # two executions of train append to the same file
        with stage_run("train", demo_params(), root) as tr:
            for step in range(3):
                tr.log_metrics({"loss": 1.0 / (step + 1) + attempt}, step=step)
            tr.set_tags({"attempt": attempt})
            tr.log_artifact(root / "best.pt", "models")
    with pytest.raises(RuntimeError), stage_run("evaluate", demo_params(), root) as tr:
        tr.log_metrics({"p1": 50.0}, step=1, also_parent=True)
        tr.log_artifacts(root / "tables", "eval/tables")
        raise RuntimeError("boom")


def _sync(root: Path, uri: str, capsys) -> str:
    code = main(["tracking", "sync", "--root", str(root), "--tracking-uri", uri])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out


def test_sync_replays_offline_stages_exactly_once(monkeypatch, tmp_path, capsys):
    root = tmp_path / "project"
    root.mkdir()
    _outage_stages(monkeypatch, root)
    segments = list(read_segments(root / "reports/tracking_offline/train.jsonl"))
    assert len(segments) == 2
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    out = _sync(root, uri, capsys)
    assert "synced 3 runs" in out and "(0 already synced)" in out, out
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ddhpose-h36m")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    by_stage: dict[str, list] = {}
    for r in runs:
        by_stage.setdefault(r.data.tags["ddhpose.stage"], []).append(r)
    trains = sorted(by_stage["train"], key=lambda r: r.data.tags["attempt"])
    for attempt, run in enumerate(trains):
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [
            (s, pytest.approx(1.0 / (s + 1) + attempt)) for s in range(3)]
        assert run.data.params["train.lr"] == str(demo_params().to_flat_dict()["train.lr"])
        assert run.info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "models")] == [
            "models/best.pt"]
        assert "ddhpose.offline_pending" not in run.data.tags
    (evaluate,) = by_stage["evaluate"]
    assert evaluate.info.status == "FAILED"
    assert evaluate.data.metrics["p1"] == 50.0
    assert [a.path for a in client.list_artifacts(evaluate.info.run_id, "eval/tables")] == [
        "eval/tables/a.csv"]

    again = _sync(root, uri, capsys)
    assert "synced 0 runs" in again and "(3 already synced)" in again, again
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_interrupted_sync_is_redone(monkeypatch, tmp_path, capsys):
    """A run left half-synced (pending tag, no final tag) is deleted and replayed."""
    root = tmp_path / "project"
    root.mkdir()
    _outage_stages(monkeypatch, root)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    seg = next(read_segments(root / "reports/tracking_offline/train.jsonl"))
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("ddhpose-h36m",  # artifacts in tmp_path, not the cwd
                                      artifact_location=(tmp_path / "mlartifacts").as_uri())
    half = client.create_run(exp_id, tags={"ddhpose.offline_pending": seg.record_id})
    _sync(root, uri, capsys)
    runs = client.search_runs([exp_id])
    assert half.info.run_id not in {r.info.run_id for r in runs}
    assert len(runs) == 3


def test_unreadable_record_is_one_line(tmp_path):
    """The command as a user runs it (a real process): one error line, exit 2."""
    folder = tmp_path / "reports" / "tracking_offline"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text('{"event": "start"}\nnot json\n{"event": "end"}\n')
    done = subprocess.run([sys.executable, "-m", "ddhpose.cli", "tracking", "sync", "--root",
                           str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ddhpose tracking: error: {folder / 'train.jsonl'}: line 2 is not JSON"]

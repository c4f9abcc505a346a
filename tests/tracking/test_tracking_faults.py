"""Tracking faults with real stores and real processes: an unwritable SQLite store goes offline
at once with one warning; a SIGKILLed stage's run does not stay RUNNING; two processes logging to
one fresh SQLite store at the same time both succeed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from demo_config import PARAMS_FILE, demo_params

import ddhpose
from ddhpose.tracking.runs import stage_run

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient

CODE = Path(ddhpose.__file__).resolve().parents[1]  # the ddhpose under test


def _offline_stage(monkeypatch, root: Path, uri: str, capfd) -> list[str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("RANK", raising=False)
    with stage_run("train", demo_params(), root) as tr:
        tr.log_metrics({"loss": 1.0}, step=1)
    assert tr.mode == "offline"
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    records = [json.loads(x) for x in
               (root / "reports/tracking_offline/train.jsonl").read_text().splitlines()]
    assert any(r["event"] == "metrics" and r["data"] == {"loss": 1.0} for r in records)
    return err


def test_sqlite_store_that_is_a_directory(monkeypatch, tmp_path, capfd):
    (tmp_path / "mlflow.db").mkdir()
    err = _offline_stage(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", capfd)
    assert len(err) == 1, err  # one warning, no SQLAlchemy retry lines
    assert err[0].startswith("ddhpose tracking: warning") and "is a directory" in err[0]


def _read_only_folder(path: Path) -> None:
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {done.stderr.strip()}")


def test_sqlite_store_in_a_read_only_folder(monkeypatch, tmp_path, capfd):
    ro = tmp_path / "ro"
    _read_only_folder(ro)
    try:
        err = _offline_stage(monkeypatch, tmp_path, f"sqlite:///{ro / 'mlflow.db'}", capfd)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)
    assert len(err) == 1, err
    assert "not writable" in err[0] and str(ro) in err[0]


STAGE_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ddhpose.config.schema import load_params
    from ddhpose.tracking.runs import stage_run
    root, mode, params = Path(sys.argv[1]), sys.argv[2], load_params(Path(sys.argv[3]))
    with stage_run("train", params, root) as tr:
        if mode == "hang":
            print(tr.run_id, flush=True)
            time.sleep(600)
        for i in range(40):
            tr.log_metrics({"a": i, "b": 2 * i}, step=i, also_parent=True)
        print(tr.mode, tr.run_id, flush=True)
""")


def _stage_env(uri: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1",
               PYTHONPATH=f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("RANK", None)
    return env


def test_sigkilled_stage_run_is_marked_killed_by_the_next_stage(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "stage.py"
    script.write_text(STAGE_SCRIPT)
    env = _stage_env(uri)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "hang",
                             str(PARAMS_FILE)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    client = MlflowClient(tracking_uri=uri)
    killed = client.get_run(run_id)
    assert killed.info.status == "RUNNING"  # nobody closed it
    parent_id = killed.data.tags["mlflow.parentRunId"]
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "log", str(PARAMS_FILE)],
                          env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert "ended without closing this run" in killed.data.tags["ddhpose.error"]
    assert client.get_run(parent_id).info.status != "RUNNING"


def test_two_processes_log_to_one_fresh_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    script = tmp_path / "stage.py"
    script.write_text(STAGE_SCRIPT)
    procs = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        procs.append(subprocess.Popen([sys.executable, str(script), str(root), "log",
                                       str(PARAMS_FILE)],
                                      env=_stage_env(uri), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for (out, err), p in zip(outs, procs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.startswith("mlflow "), f"went offline: {err[-2000:]}"
    client = MlflowClient(tracking_uri=uri)
    for out, _ in outs:
        run = client.get_run(out.split()[1])
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "b")] == list(
            range(40))

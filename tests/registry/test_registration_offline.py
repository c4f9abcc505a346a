"""The evaluate stage's model registration never stops a stage (issue #26, bugs 2 and 3), and
``ddhpose tracking sync`` registers the model later, continuing the stage's own run.

Real parts only: a real ``mlflow server`` subprocess on 127.0.0.1 (SQLite backend) killed before
the registration; a SQLite store on a real 4 MiB tmpfs filled up before the registration; the
stage runs in a real process through :func:`ddhpose.pipeline.runner.run_stage`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from demo_config import PARAMS_FILE

import ddhpose

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

CODE = Path(ddhpose.__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "ddhpose-h36m"

# The evaluate stage's tracking and registration, without the evaluation itself: it logs like
# evaluate, waits for the test to break the store (a line on stdin), then registers.
STAGE_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from ddhpose.model import DDHPose
    from ddhpose.model.checkpoint import save_checkpoint
    from ddhpose.registry.register import register_evaluated_model
    from ddhpose.project import ProjectPaths
    from ddhpose.pipeline.runner import run_stage
    from ddhpose.synthetic.smoke import synthetic_split
    from ddhpose.training.smoke import tiny_model_config

    params_file, p1 = sys.argv[1], float(sys.argv[2])

    def evaluate(params, root, tracker):
        best = ProjectPaths(root).best
        if not best.is_file():
            best.parent.mkdir(parents=True, exist_ok=True)
            torch.manual_seed(0)
            save_checkpoint(best, DDHPose(tiny_model_config("h36m")))
        tracker.log_metrics({"p1_j_agg": p1}, step=1)
        tracker.log_metrics({"p1_j_agg_last": p1}, also_parent=True)
        print("RUN", tracker.run_id, tracker.parent_run_id, flush=True)
        sys.stdin.readline()  # the test breaks the store now
        metrics = {"headline": {"aggregation": "j_agg", "p1_mm": p1}, "hypotheses": 1,
                   "steps": 1}
        register_evaluated_model(params, root, tracker, synthetic_split(), metrics)

    sys.exit(run_stage("evaluate", evaluate, params_file))
""")


def _env(uri: str, root: Path) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1", DDHPOSE_ROOT=str(root),
               PYTHONPATH=f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for key in ("RANK", "DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(key, None)
    return env


class Stage:
    """The stage script in a real process, stopped before its registration."""

    def __init__(self, root: Path, uri: str, p1: float = 50.0) -> None:
        script = root.parent / "stage.py"
        script.write_text(STAGE_SCRIPT)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(PARAMS_FILE), str(p1)], cwd=root,
            env=_env(uri, root), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("RUN "):
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the stage did not start online: {line}{out}\n{err[-3000:]}")
        _, self.run_id, self.parent_id = line.split()

    def register(self) -> tuple[int, str, str]:
        """Let the stage register and end; its exit code, stdout and stderr."""
        out, err = self.proc.communicate("go\n", timeout=600)
        return self.proc.returncode, out, err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and served artifacts."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.folder / "server.log", "a")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            cwd=self.folder, env=_env("", self.folder), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail("mlflow server did not start:\n"
                                + (self.folder / "server.log").read_text()[-3000:])
                time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the server and its workers (its own process group): a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _sync(root: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddhpose.cli", "tracking", "sync", "--root",
                           str(root), "--tracking-uri", uri], env=_env(uri, root), cwd=root,
                          capture_output=True, text=True, timeout=600)


def _assert_one_warning(code: int, out: str, err: str, cause: str) -> None:
    assert code == 0, f"stage failed ({code}):\n{out[-2000:]}\n{err[-5000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n" + "\n".join(lines[:60])
    assert lines[0].startswith("ddhpose tracking: warning: MLflow at "), lines[0]
    assert cause in lines[0], lines[0]
    assert "Traceback" not in out and "\x1b[" not in out + err
    assert "model not registered" in out and "ddhpose tracking sync" in out, out


def _assert_registered_in_the_stage_run(client: MlflowClient, stage: Stage, sync_out: str
                                        ) -> None:
    run = client.get_run(stage.run_id)
    assert run.info.status == "FINISHED", run.info
    assert client.get_run(stage.parent_id).info.status == "FINISHED"
    assert client.get_experiment_by_name("ddhpose-offline") is None
    (version,) = client.search_model_versions(f"name='{NAME}'")
    assert version.run_id == stage.run_id
    for alias in ("champion", "challenger"):
        assert str(client.get_model_version_by_alias(NAME, alias).version) == str(version.version)
    assert version.tags["headline_value"] == "50.0"
    assert f"registered {NAME} version {version.version} as champion" in sync_out, sync_out


@pytest.mark.slow  # two mlflow server starts and four processes importing torch: ~1 min
def test_server_killed_before_registration_then_sync_registers(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    server = MlflowServer(tmp_path)
    server.start()
    try:
        stage = Stage(root, server.uri)
        server.kill()
        code, out, err = stage.register()
        _assert_one_warning(code, out, err, "Connection refused")

        server.start()  # the server comes back; the stage's run is still RUNNING
        client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
        assert client.get_run(stage.run_id).info.status == "RUNNING"
        done = _sync(root, server.uri)
        assert done.returncode == 0, done.stderr[-3000:]
        _assert_registered_in_the_stage_run(client, stage, done.stdout)
        p1 = client.get_metric_history(stage.run_id, "p1_j_agg")
        assert [(m.step, m.value) for m in p1] == [(1, 50.0)]  # logged online, not twice

        again = _sync(root, server.uri)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "synced 0 runs" in again.stdout and "1 already synced" in again.stdout, again.stdout
        assert len(client.search_model_versions(f"name='{NAME}'")) == 1

        # online again: the next evaluation registers at once, without a line on stderr (no
        # MLflow INFO logs, no "Add type hints" warning); a tie keeps the synced champion
        code, out, err = Stage(root, server.uri, p1=50.0).register()
        assert code == 0 and err == "", err[-3000:]
        assert f"registered {NAME} version 2 as challenger" in out, out
        assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    finally:
        server.kill()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (a real file system that fills up); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_full_disk_under_the_store_during_registration_then_sync_registers(tmp_path,
                                                                           small_disk):
    root = tmp_path / "project"
    root.mkdir()
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    stage = Stage(root, uri)
    filler = _fill(small_disk)
    code, out, err = stage.register()
    _assert_one_warning(code, out, err, "full")
    assert len(out.splitlines()) < 10, out

    filler.unlink()  # space again
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_run(stage.run_id).info.status == "RUNNING"
    done = _sync(root, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_registered_in_the_stage_run(client, stage, done.stdout)


def _one_offline_train(root: Path) -> None:
    records = root / "reports" / "tracking_offline"
    records.mkdir(parents=True)
    (records / "train.jsonl").write_text(
        '{"time": "2024-01-01T00:00:00+00:00", "stage": "train", "event": "start", '
        '"rank": 2, "reason": "MLflow unavailable", "experiment": "ddhpose-h36m"}\n'
        '{"time": "2024-01-01T00:00:01+00:00", "stage": "train", "event": "metrics", '
        '"scope": "child", "step": 1, "data": {"loss": 1.0}}\n'
        '{"time": "2024-01-01T00:00:02+00:00", "stage": "train", "event": "end", '
        '"status": "FINISHED", "error": null}\n')


def test_sync_puts_a_new_experiment_s_artifacts_next_to_the_store(tmp_path):
    root = tmp_path / "project"
    _one_offline_train(root)
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    done = _sync(root, uri)
    assert done.returncode == 0 and "synced 1 run " in done.stdout, done.stdout + done.stderr
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("ddhpose-h36m")
    assert exp.artifact_location == (tmp_path / "store" / "mlartifacts" / "ddhpose-h36m").as_uri()
    assert not (root / "mlruns").exists()


def test_sync_skips_a_synced_run_the_user_deleted(tmp_path):
    """A record already synced is never replayed, even after its run was deleted."""
    root = tmp_path / "project"
    _one_offline_train(root)
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    first = _sync(root, uri)
    assert first.returncode == 0 and "synced 1 run " in first.stdout, first.stdout + first.stderr
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ddhpose-h36m")
    (run,) = client.search_runs([exp.experiment_id])
    client.delete_run(run.info.run_id)
    again = _sync(root, uri)
    assert again.returncode == 0, again.stderr
    assert "synced 0 runs" in again.stdout and "deleted" in again.stdout, again.stdout
    assert len(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)) == 1


def _stage_that_loses_its_store(monkeypatch, root: Path, disk: Path, fail: bool) -> tuple:
    """A stage opened online on a SQLite store whose disk fills up mid-stage."""
    from demo_config import demo_params

    from ddhpose.tracking.runs import stage_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{disk / 'mlflow.db'}")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    try:
        with stage_run("train", demo_params(), root) as tr:
            ids = (tr.run_id, tr.parent_run_id)
            assert ids[0] is not None
            _fill(disk)
            tr.log_metrics({"loss": 0.5}, step=3)
            assert tr.mode == "offline"
            if fail:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    (disk / "filler").unlink()
    return ids


def test_sync_ends_the_stage_s_own_run_with_its_status(monkeypatch, tmp_path, small_disk,
                                                       capfd):
    root = tmp_path / "project"
    root.mkdir()
    run_id, parent_id = _stage_that_loses_its_store(monkeypatch, root, small_disk, fail=True)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "disk full" in err[0], err
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # left behind by the outage
    done = _sync(root, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"continued run {run_id}" in done.stdout, done.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(3, 0.5)]
    assert client.get_run(parent_id).info.status == "FAILED"
    assert client.get_experiment_by_name("ddhpose-offline") is None
    assert len(client.search_runs([run.info.experiment_id])) == 2  # the parent and the stage


def test_sync_does_not_resurrect_a_stage_run_deleted_on_the_server(monkeypatch, tmp_path,
                                                                   small_disk):
    root = tmp_path / "project"
    root.mkdir()
    run_id, _ = _stage_that_loses_its_store(monkeypatch, root, small_disk, fail=False)
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.delete_run(run_id)
    done = _sync(root, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ran in run {run_id}, deleted on the server: not replayed" in done.stdout, done.stdout
    assert "synced 0 runs" in done.stdout
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.get_experiment_by_name("ddhpose-offline") is None


LOCK_HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
    print(time.time(), flush=True)
    fcntl.flock(fd, fcntl.LOCK_UN)
""")


def test_registration_waits_for_the_sqlite_writer_lock(tmp_path):
    """Another pipeline holds the store's lock: registration waits for it, then registers."""
    import threading

    import torch

    from ddhpose.model import DDHPose
    from ddhpose.model.checkpoint import save_checkpoint
    from ddhpose.registry.register import register_model
    from ddhpose.training.smoke import tiny_model_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("ddhpose-h36m",
                                   artifact_location=(tmp_path / "mlartifacts").as_uri())
    run = client.create_run(exp)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "best.pt", DDHPose(tiny_model_config("h36m")))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, f"{tmp_path / 'mlflow.db'}.lock"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    result: dict = {}

    def register() -> None:
        try:
            result["out"] = register_model(
                tracking_uri=uri, run_id=run.info.run_id, checkpoint=ckpt, name=NAME,
                tags={"test_data_fingerprint": "fp"}, metric="mpjpe_mm_j_agg", value=50.0)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=register)
    thread.start()
    thread.join(timeout=8)  # registration alone takes a few seconds; held, it cannot finish
    still_waiting = thread.is_alive()
    released = float(holder.communicate("go\n", timeout=60)[0].strip())
    thread.join(timeout=300)
    assert "error" not in result, result
    assert still_waiting, "registration did not wait for the store's lock"
    (version,) = client.search_model_versions(f"name='{NAME}'")
    assert version.creation_timestamp / 1000 >= released - 0.01


def test_offline_evaluate_records_its_model_and_sync_registers_it(monkeypatch, tmp_path, capfd):
    """Unreachable from the start: the stage records the model; sync registers it in the run it
    creates for the stage, by the alias rule; a changed checkpoint is not registered."""
    import torch
    from demo_config import demo_params

    from ddhpose.model import DDHPose
    from ddhpose.model.checkpoint import save_checkpoint
    from ddhpose.registry.register import register_evaluated_model
    from ddhpose.synthetic.smoke import synthetic_split
    from ddhpose.tracking.runs import stage_run
    from ddhpose.training.smoke import tiny_model_config

    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(root / "models" / "best.pt", DDHPose(tiny_model_config("h36m")))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    metrics = {"headline": {"aggregation": "j_agg", "p1_mm": 42.0}, "hypotheses": 1,
               "steps": 1}
    for _ in range(2):  # the second evaluation's checkpoint is changed before the sync
        with stage_run("evaluate", demo_params(), root) as tr:
            assert register_evaluated_model(demo_params(), root, tr, synthetic_split(),
                                            metrics) is None
    out, err = capfd.readouterr()
    assert out.count("model not registered: MLflow is offline") == 2, out
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 2, err  # one per stage
    with open(root / "models" / "best.pt", "ab") as fh:  # the sync sees another file
        fh.write(b"retrained")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = _sync(root, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("not registered:") == 2 and "changed since" in done.stdout, \
        done.stdout
    assert "registered" not in done.stdout.replace("not registered", "")

    # the same file as when the stages ran: a fresh store gets it registered once per stage
    torch.manual_seed(0)
    save_checkpoint(root / "models" / "best.pt", DDHPose(tiny_model_config("h36m")))
    uri2 = f"sqlite:///{tmp_path / 'other.db'}"
    done = _sync(root, uri2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"registered {NAME} version 1 as champion (no champion yet)" in done.stdout
    assert f"registered {NAME} version 2 as challenger" in done.stdout, done.stdout
    client = MlflowClient(tracking_uri=uri2, registry_uri=uri2)
    v1 = client.get_model_version_by_alias(NAME, "champion")
    run = client.get_run(v1.run_id)
    assert run.data.tags["ddhpose.stage"] == "evaluate" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == NAME

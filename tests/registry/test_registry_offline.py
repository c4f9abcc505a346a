"""Resolving a ``models:/`` URI without a tracking server fails fast, in one line (issue #26, bug
4), and a resolution that works draws no MLflow download bar and leaves the environment as it was.

Real parts: a free 127.0.0.1 port with nothing listening (the server is down), real ``ddhpose
infer`` and ``stages/init_model.py`` subprocesses, a real SQLite store with a registered model.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from ddhpose.model import DDHPose
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.training.smoke import tiny_model_config

pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[2]
URI = "models:/x@champion"
LIMIT_S = 20  # the bound: "fails in under 20 s"
MLFLOW_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")


def _dead_server() -> str:
    """``http://127.0.0.1:<port>`` with nothing listening on the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _env(tracking: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking, OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO), **extra)
    for key in MLFLOW_ENV:  # the user set no caps: ddhpose's own bounds must apply
        env.pop(key, None)
    env.pop("DDHPOSE_ROOT", None)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess,
                                                                  float]:
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} still running after 60 s (the issue: about 4 minutes)")
    return proc, time.monotonic() - start


def _assert_one_fast_line(proc: subprocess.CompletedProcess, elapsed: float, prefix: str,
                          tracking: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith(prefix), line
    assert URI in line and tracking in line, line
    assert "connection refused" in line.lower(), line
    assert elapsed < LIMIT_S, f"took {elapsed:.1f} s: {line}"


def test_infer_with_a_models_uri_and_no_server_fails_fast_in_one_line(tmp_path):
    tracking = _dead_server()
    proc, elapsed = _run(
        [sys.executable, "-m", "ddhpose.cli", "infer", "--checkpoint", URI, "--keypoints",
         str(REPO / "examples" / "keypoints_walk_coco.json"), "--out", str(tmp_path / "o.npz")],
        tmp_path, _env(tracking))
    _assert_one_fast_line(proc, elapsed, f"ddhpose infer: error: {URI}: ", tracking)
    assert not (tmp_path / "o.npz").exists()


def test_init_model_stage_with_a_models_uri_and_no_server_fails_fast_in_one_line(tmp_path):
    tracking = _dead_server()
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["init"] = URI
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False),
                                          encoding="utf-8")
    proc, elapsed = _run([sys.executable, str(REPO / "stages" / "init_model.py")], tmp_path,
                         _env(tracking))
    _assert_one_fast_line(proc, elapsed, f"init_model: error: params key 'model.init': {URI}: ",
                          tracking)
    assert not (tmp_path / "models" / "init" / "init.pt").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts served over HTTP: the
    path on which MLflow draws its download bar); its URI."""
    port = _dead_server().rsplit(":", 1)[1]
    uri = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (the server keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port,
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "served")],
        cwd=tmp_path, env=_env(""), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start:\n"
                                + (tmp_path / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_resolution_draws_no_download_bar_and_restores_the_environment(tmp_path, monkeypatch,
                                                                         capfd, mlflow_server):
    from mlflow.tracking import MlflowClient

    from ddhpose.registry.register import register_model
    from ddhpose.registry.resolve import download_checkpoint

    for key in MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "17")  # the user's own value is kept
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # register_model sets it globally
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.create_run(client.create_experiment("e"))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "c.pt", DDHPose(tiny_model_config("h36m")))
    register_model(tracking_uri=mlflow_server, run_id=run.info.run_id, checkpoint=ckpt,
                   name="m", tags={"dataset": "h36m", "test_data_fingerprint": "f"},
                   metric="mpjpe_mm_j_agg", value=1.0, metrics={"mpjpe_mm_j_agg": 1.0})
    client.set_terminated(run.info.run_id)
    # log_model switches the bar off for good in its process; the user's shell has no such value
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    before = dict(os.environ)
    capfd.readouterr()

    path, record = download_checkpoint("models:/m@champion", tmp_path / "dl",
                                       tracking_uri=mlflow_server)

    err = capfd.readouterr().err
    assert path.read_bytes() == ckpt.read_bytes() and record["version"] == "1"
    assert "Downloading artifacts" not in err and "%|" not in err, err
    assert dict(os.environ) == before


def test_a_missing_sqlite_store_is_one_line_and_is_not_created(tmp_path):
    from ddhpose.registry.resolve import RegistryError, resolve_model_uri

    db = tmp_path / "mlflow.db"
    with pytest.raises(RegistryError) as info:
        resolve_model_uri(URI, tracking_uri=f"sqlite:///{db}")
    assert str(info.value).startswith(f"{URI}: no MLflow store at {db} "), info.value
    assert "\n" not in str(info.value)
    assert not db.exists()

"""A team MLflow tracking server: ``mlflow server`` on PostgreSQL with artifact proxying.

By default PostgreSQL is embedded (the ``pgserver`` package ships its binaries; no root, no
containers) with its data folder under ``<data dir>/postgres``; or an existing PostgreSQL is used
through its ``postgresql://`` URI. Artifacts go to ``--artifacts-destination`` (a folder or an
``s3://`` URI) through the server (``--serve-artifacts``), so clients write none to their disk.

Stopping (SIGINT / SIGTERM) stops ``mlflow server`` first, then PostgreSQL cleanly (``pg_ctl stop
-w``: a "fast" shutdown that ends with a checkpoint), so the database is consistent and a restart
on the same data folder finds the earlier runs. The packages of the ``team`` extra (``pgserver``,
``psycopg``) are installed into the running interpreter when missing (by ``ddhpose server``,
through :func:`ddhpose.extras.ensure_extra`).

Nothing outlives ``ddhpose server``, even ``kill -9``: what it starts is recorded and a watchdog
stops it when the server dies (:mod:`ddhpose.tracking.leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddhpose.tracking.leftovers import (
    STATE_FILE,
    ServerError,
    die_with_parent,
    identity,
    prune_handle_pids,
    release_watchdog,
    running_postmaster,
    start_watchdog,
    stop_leftovers,
    stop_postgres,
    write_state,
)

EXTRA = "team"
#: the modules of the ``team`` extra that ``ddhpose server`` needs
EXTRA_MODULES = ("pgserver", "psycopg")
# mlflow server's background job workers (GenAI scorers, ~240 MB each) are not used here.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
START_TIMEOUT_S = 180.0



@dataclass(frozen=True)
class ServerConfig:
    """What ``ddhpose server`` starts. ``backend_store_uri`` None: embedded PostgreSQL in
    ``data_dir/postgres``; ``artifacts_destination`` None: the folder ``data_dir/artifacts``."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    workers: int = 1
    allowed_hosts: str | None = None

    @property
    def tracking_uri(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def artifacts(self) -> str:
        return self.artifacts_destination or str((self.data_dir / "artifacts").resolve())


# --- PostgreSQL -----------------------------------------------------------------------------------


def _to_sqlalchemy(uri: str) -> str:
    """``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://`` (MLflow needs psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix):]
    return uri


@contextlib.contextmanager
def embedded_postgres(pgdata: Path, database: str = "mlflow") -> Iterator[str]:
    """Start (or reuse) a PostgreSQL cluster in ``pgdata``; yield a SQLAlchemy URI of
    ``database`` (created if missing); stop the cluster cleanly on exit."""
    import pgserver

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    prune_handle_pids(pgdata, getattr(pgserver.PostgresServer, "_lock", None))
    try:
        pg = _start_postgres(pgserver, pgdata)
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        raise ServerError(f"PostgreSQL in {pgdata} did not start: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]} {' '.join(tail)}") from exc
    try:
        exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            pg.psql(f"CREATE DATABASE {database};")
        yield _to_sqlalchemy(pg.get_uri(database))
    finally:
        pg.cleanup()  # pg_ctl stop -w: a clean shutdown, the data folder stays consistent
        post = running_postmaster(pgdata)  # pgserver skips the stop while it counts other users
        if post is not None and not stop_postgres(pgdata, post):
            raise ServerError(f"PostgreSQL (pid {post.pid}) in {pgdata} ignored its fast "
                              f"shutdown and was stopped with SIGQUIT/SIGKILL: it recovers "
                              f"from its log on the next start")


def _start_postgres(pgserver: Any, pgdata: Path, attempts: int = 3) -> Any:
    """``pgserver.get_server``, retried: it gives ``pg_ctl start`` only 10 s, which a loaded
    machine can exceed while PostgreSQL still comes up (a retry then finds it running)."""
    for attempt in range(1, attempts + 1):
        try:
            return pgserver.get_server(pgdata, cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            # a failed start stays registered in pgserver's cache of servers: forget it
            pgserver.PostgresServer._instances.pop(pgdata, None)
            if attempt == attempts:
                raise
            time.sleep(2.0)
    raise AssertionError("unreachable")


# --- mlflow server --------------------------------------------------------------------------------


def mlflow_server_command(config: ServerConfig, backend_uri: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend_uri,
            "--serve-artifacts", "--artifacts-destination", config.artifacts(),
            "--host", config.host, "--port", str(config.port),
            "--workers", str(config.workers),
            *(["--allowed-hosts", config.allowed_hosts] if config.allowed_hosts else [])]


def wait_healthy(uri: str, proc: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``uri``/health until it answers 200; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"mlflow server exited with status {proc.returncode} before it "
                              f"answered at {uri} (see its output above)")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServerError(f"mlflow server did not answer at {uri} within {timeout_s:.0f} s")


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def serve(config: ServerConfig, log: Callable[[str], None] = print,
          on_ready: Callable[[str], None] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; return 0 after a clean stop.

    ``on_ready(tracking_uri)`` is called once the server answers.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    state_path = config.data_dir / STATE_FILE
    owner, left = stop_leftovers(state_path)  # before the port check: they may hold the port
    if left:
        log(f"stopped {'; '.join(left)}: left running by an earlier ddhpose server (pid "
            f"{owner}) that did not stop cleanly")
    elif owner is not None:
        log(f"an earlier ddhpose server (pid {owner}) did not stop cleanly; nothing it started "
            f"was still running")
    if port_in_use(config.host, config.port):
        raise ServerError(f"port {config.port} on {config.host} is already in use "
                          f"(choose another with --port)")
    if config.artifacts_destination is None:
        Path(config.artifacts()).mkdir(parents=True, exist_ok=True)
    stop = {"signal": None}

    def handler(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    state: dict[str, Any] = {
        "server": identity(os.getpid()), "mlflow": None,
        "pgdata": None if config.backend_store_uri else str((config.data_dir / "postgres")
                                                             .resolve())}
    write_state(state_path, state)
    watchdog = start_watchdog(state_path)
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _backend(config, log) as backend_uri:
            env = dict(os.environ, **SERVER_ENV)
            proc = subprocess.Popen(mlflow_server_command(config, backend_uri), env=env,
                                    start_new_session=True, preexec_fn=die_with_parent())
            state["mlflow"] = identity(proc.pid)
            write_state(state_path, state)
            try:
                wait_healthy(config.tracking_uri, proc)
                log(f"MLflow tracking server ready (backend {_redact(backend_uri)}, artifacts "
                    f"{config.artifacts()}); on each client run:")
                log(f"export MLFLOW_TRACKING_URI={config.tracking_uri}")
                if on_ready:
                    on_ready(config.tracking_uri)
                while stop["signal"] is None and proc.poll() is None:
                    time.sleep(0.2)
            finally:
                _stop_process(proc)
            if stop["signal"] is None:
                raise ServerError(f"mlflow server exited on its own with status {proc.returncode}")
        log("stopped: mlflow server shut down cleanly" if config.backend_store_uri else
            "stopped: mlflow server and PostgreSQL shut down cleanly")
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        try:  # normally nothing is left to stop: this removes the record
            _, left = stop_leftovers(state_path)
            if left:
                log(f"stopped {'; '.join(left)}, still running after the stop")
        finally:
            release_watchdog(watchdog)


@contextlib.contextmanager
def _backend(config: ServerConfig, log: Callable[[str], None]) -> Iterator[str]:
    if config.backend_store_uri:
        yield _to_sqlalchemy(config.backend_store_uri)
        return
    pgdata = config.data_dir / "postgres"
    log(f"starting PostgreSQL in {pgdata}")
    with embedded_postgres(pgdata) as uri:
        yield uri


def _stop_process(proc: subprocess.Popen, wait_s: float = 30.0) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL after ``wait_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _redact(uri: str) -> str:
    """Hide a password in a database URI."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", uri)

"""``kill -9`` of ``ddhpose server`` (a real embedded PostgreSQL and a real ``mlflow server``):
nothing it started keeps running (mlflow server, uvicorn, PostgreSQL); when even its watchdog is
killed with it, the next start stops what was left and says so; a clean stop really stops
PostgreSQL and says so truthfully."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from server_process import ServerProcess, free_port

psutil = pytest.importorskip("psutil")
pytest.importorskip("pgserver", reason="needs the [team] extra (pip install -e '.[team]')")
pytest.importorskip("psycopg", reason="needs the [team] extra (pip install -e '.[team]')")

pytestmark = pytest.mark.slow  # two or three real server starts: about a minute

GONE_WITHIN_S = 20.0  # "within a few seconds", generous for a loaded 2-core machine


def _postmaster(data_dir: Path) -> psutil.Process | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        proc = psutil.Process(pid)
        return proc if "postgres" in proc.name() else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _tree(server: ServerProcess) -> list[psutil.Process]:
    """Every process ``ddhpose server`` started: its descendants and the postmaster."""
    assert server.proc is not None
    procs = psutil.Process(server.proc.pid).children(recursive=True)
    post = _postmaster(server.data_dir)
    assert post is not None, "PostgreSQL runs while the server is up"
    return [*procs, post, *post.children(recursive=True)]


def _alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            pass
    return out


def _wait_gone(procs: list[psutil.Process], within_s: float = GONE_WITHIN_S) -> list[str]:
    deadline = time.monotonic() + within_s
    while (left := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def _answers(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _kinds(procs: list[psutil.Process]) -> str:
    return " ".join(sorted({" ".join(p.cmdline())[:60] for p in procs if p.is_running()}))


@pytest.fixture
def server():
    # not under pytest's tmp_path: run as root, pgserver runs PostgreSQL as the user "pgserver",
    # which needs to traverse the folder's parents, and each new pytest session (other test runs
    # at the same time) sets /tmp/pytest-of-root back to 0700
    base = Path(tempfile.mkdtemp(prefix="ddhpose-server-crash-"))
    base.chmod(0o755)
    srv = ServerProcess(base / "server", free_port(), cwd=base)
    yield srv
    srv.stop()
    # whatever a failed test left: stop it by pid (never by name)
    post = _postmaster(srv.data_dir)
    for p in ([post] if post else []):
        p.kill()
    shutil.rmtree(base, ignore_errors=True)


def test_kill_9_leaves_nothing_running_and_the_next_start_stops_cleanly(server):
    uri = server.start()
    procs = _tree(server)
    kinds = _kinds(procs)
    assert "mlflow" in kinds and "postgres" in kinds, kinds
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    left = _wait_gone(procs)
    assert not left, f"still running after kill -9 of ddhpose server: {left}"
    assert not _answers(uri)
    deadline = time.monotonic() + 10
    while not any("ended without stopping" in ln for ln in server.lines) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    said = [ln for ln in server.lines if "ended without stopping" in ln]
    assert said and "PostgreSQL (pid" in said[0] and "mlflow server (pid" in said[0], said

    uri = server.start()  # the same data dir and port
    assert _answers(uri)
    procs = _tree(server)
    assert server.stop() == 0
    assert any("PostgreSQL shut down cleanly" in ln for ln in server.lines), server.lines[-5:]
    assert not _wait_gone(procs, 5.0), "a clean stop leaves nothing running"
    assert _postmaster(server.data_dir) is None


def test_a_restart_stops_what_a_crash_left(server):
    """ddhpose server and its watchdog both killed (as by an OOM killer or ``kill -9`` of the
    group): the next start finds PostgreSQL still running on its data dir, stops it, says so."""
    server.start()
    post = _postmaster(server.data_dir)
    assert post is not None
    watchdogs = [p for p in psutil.Process(server.proc.pid).children()
                 if "ddhpose-server-watchdog" in " ".join(p.cmdline())]
    assert len(watchdogs) == 1, [p.cmdline() for p in psutil.Process(server.proc.pid).children()]
    watchdogs[0].kill()  # (a zombie until ddhpose server, its parent, is gone too)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    time.sleep(2.0)
    assert post.is_running(), "PostgreSQL runs on after its parent and the watchdog died"

    server.start()
    said = [ln for ln in server.lines if "left running" in ln]
    assert said and f"PostgreSQL (pid {post.pid}," in said[0], server.lines
    assert not _wait_gone([post], 5.0)
    new_post = _postmaster(server.data_dir)
    assert new_post is not None and new_post.pid != post.pid
    assert server.stop() == 0
    assert any("PostgreSQL shut down cleanly" in ln for ln in server.lines)
    assert not _wait_gone([new_post], 5.0), "the clean stop really stopped PostgreSQL"

"""``ddhpose server``'s record of what it started (``ddhpose-server.json``) with real processes
and no PostgreSQL: a record left by a dead server gets its process group stopped; a record of a
server that still runs makes a second start refuse the data dir (one line, exit 2); pgserver's
handle list loses the PIDs of dead processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
from server_process import free_port

from ddhpose.cli import main
from ddhpose.tracking.server import STATE_FILE, prune_handle_pids, stop_leftovers


def _identity(pid: int) -> dict:
    return {"pid": pid, "create_time": psutil.Process(pid).create_time()}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_servers_group_is_stopped_and_the_record_removed(tmp_path):
    # a stand-in for mlflow server: a group leader with a child, as uvicorn under mlflow
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, "
         "'-c', 'import time; time.sleep(600)']); time.sleep(600)"], start_new_session=True)
    try:
        for _ in range(100):  # until the child has started
            if psutil.Process(leader.pid).children():
                break
            time.sleep(0.1)
        child = psutil.Process(leader.pid).children()[0]
        path = tmp_path / STATE_FILE
        dead = _dead_pid()
        path.write_text(json.dumps({"server": {"pid": dead, "create_time": 1.0},
                                    "mlflow": _identity(leader.pid), "pgdata": None}))
        owner, stopped = stop_leftovers(path)
        assert owner == dead
        assert stopped and f"mlflow server (pid {leader.pid}, 2 process(es))" in stopped[0]
        assert leader.wait(5) is not None
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        assert not path.exists()
        assert stop_leftovers(path) == (None, [])
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


def test_a_data_dir_in_use_is_refused_in_one_line(tmp_path, capsys):
    # a live process (not this one) recorded as the server that owns the data dir
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        data = tmp_path / "srv"
        data.mkdir()
        state = {"server": _identity(owner.pid), "mlflow": None, "pgdata": None}
        (data / STATE_FILE).write_text(json.dumps(state))
        rc = main(["server", "--data-dir", str(data), "--port", str(free_port())])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert f"in use by the ddhpose server with pid {owner.pid}" in err[0]
        assert json.loads((data / STATE_FILE).read_text()) == state  # untouched
        assert not (data / "postgres").exists()  # refused before PostgreSQL started
    finally:
        owner.kill()
        owner.wait()


def test_dead_pids_leave_pgservers_handle_list(tmp_path):
    dead = _dead_pid()
    alive = psutil.Process().pid
    (tmp_path / ".handle_pids.json").write_text(json.dumps([dead, alive]))
    assert prune_handle_pids(tmp_path) == [dead]
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [alive]
    assert prune_handle_pids(tmp_path) == []

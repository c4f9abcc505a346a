"""What ``ddhpose server`` started, and stopping it after a crash (:mod:`ddhpose.tracking.server`).

Nothing outlives ``ddhpose server``, even ``kill -9``: it records what it starts (its own PID,
``mlflow server``'s process group, the PostgreSQL data folder; each with its start time) in
``<data dir>/ddhpose-server.json`` and starts a small watchdog process (``ddhpose-server-watchdog``
in its command line) that waits on a pipe from it. When ``ddhpose server`` dies without its clean
stop, the pipe closes and the watchdog stops the ``mlflow server`` group (uvicorn and its workers)
and PostgreSQL (its postmaster, which ``pg_ctl`` starts in a session of its own, from
``postmaster.pid``) and says so on stderr. ``mlflow server`` also gets SIGTERM from the kernel
when its parent dies (``PR_SET_PDEATHSIG``, Linux). Should the watchdog die too, the next start
on the same data folder finds the record, stops what still runs (one line: what, and which PID
left it) and then starts afresh; a record whose ``ddhpose server`` still runs is refused (the
data folder is in use). pgserver's own count of the processes using the cluster
(``postgres/.handle_pids.json``) keeps a killed process's PID forever, after which pgserver never
stops PostgreSQL: dead PIDs are dropped from it before each start, and after each stop this
module checks that the postmaster has really gone (stopping it itself otherwise), so "shut down
cleanly" is only said when it is true.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddhpose.errors import DDHPoseError

STATE_FILE = "ddhpose-server.json"  # in the data dir: what a running server started
WATCHDOG_MARK = "ddhpose-server-watchdog"  # in the watchdog's command line
PG_FAST_STOP_S = 60.0  # PostgreSQL's fast shutdown (a checkpoint) before an immediate one
GROUP_STOP_S = 15.0  # mlflow server's group after SIGTERM, before SIGKILL


class ServerError(DDHPoseError):
    """The tracking server (or its database) could not start or stop."""


def _process(pid: int, create_time: float, tolerance_s: float = 1.0) -> Any:
    """The running ``psutil.Process`` ``pid`` if it started at ``create_time`` (not a later
    process that reuses the PID), else None."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(create_time)) > tolerance_s or \
                proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, ValueError, TypeError):
        return None


def identity(pid: int) -> dict[str, Any]:
    import psutil

    return {"pid": pid, "create_time": psutil.Process(pid).create_time()}


def running_postmaster(pgdata: Path) -> Any:
    """The postmaster of ``pgdata/postmaster.pid`` as a ``psutil.Process`` if it runs (its
    start time matches the file's, so a reused PID is not taken for it), else None."""
    try:
        lines = (Path(pgdata) / "postmaster.pid").read_text().splitlines()
        pid, started = int(lines[0]), float(lines[2])
    except (OSError, ValueError, IndexError):
        return None
    proc = _process(pid, started, tolerance_s=5.0)
    try:
        return proc if proc is not None and "postgres" in proc.name() else None
    except Exception:  # psutil.Error: it ended meanwhile
        return None


def stop_postgres(pgdata: Path, post: Any, fast_s: float = PG_FAST_STOP_S) -> bool:
    """Stop the postmaster ``post``: PostgreSQL's fast shutdown (SIGINT: sessions end, a
    checkpoint is written); an immediate one (SIGQUIT), then SIGKILL, if it has not ended
    within ``fast_s``. True if the fast shutdown did it."""
    import psutil

    for sig, wait_s in ((signal.SIGINT, fast_s), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(psutil.NoSuchProcess):
            post.send_signal(sig)
        try:
            post.wait(wait_s)
            return sig == signal.SIGINT
        except psutil.TimeoutExpired:
            continue
    raise ServerError(f"PostgreSQL (pid {post.pid}) in {pgdata} did not stop, even on SIGKILL")


def prune_handle_pids(pgdata: Path, lock: Any = None) -> list[int]:
    """Drop the PIDs of processes that no longer run from pgserver's ``.handle_pids.json``.

    pgserver lists there each process that uses the cluster and stops PostgreSQL only when the
    last one leaves; a process killed with ``kill -9`` stays listed, so no later stop would stop
    PostgreSQL. Returns the PIDs dropped."""
    import psutil

    path = Path(pgdata) / ".handle_pids.json"
    with lock if lock is not None else contextlib.nullcontext():
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(pids, list):
            return []
        dead = [p for p in pids if not (isinstance(p, int) and psutil.pid_exists(p))]
        if dead:
            path.write_text(json.dumps([p for p in pids if p not in dead]))
    return dead


def write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, path)


def _group_members(leader: dict[str, Any]) -> list[Any]:
    """The processes of the group ``mlflow server`` leads (uvicorn and its workers), and its
    descendants, that started no earlier than it did."""
    import psutil

    pgid, since = int(leader["pid"]), float(leader["create_time"]) - 1.0
    found: dict[int, Any] = {}
    head = _process(pgid, leader["create_time"])
    if head is not None:
        found[head.pid] = head
        with contextlib.suppress(psutil.Error):
            found.update({p.pid: p for p in head.children(recursive=True)})
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.create_time() >= since:
                found.setdefault(proc.pid, proc)
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def _terminate(procs: list[Any], wait_s: float = GROUP_STOP_S) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=wait_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10.0)


def stop_leftovers(path: Path) -> tuple[int | None, list[str]]:
    """Stop what the ``ddhpose server`` recorded in ``path`` (:data:`STATE_FILE`) still has
    running (the ``mlflow server`` group, PostgreSQL), tidy pgserver's handle list and remove
    the record. Returns (the PID of the server that wrote it, what was stopped); (None, []) if
    there is no record. :class:`ServerError` if that server is still running (and not us)."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError):
        state = {}
    state = state if isinstance(state, dict) else {}
    owner = state.get("server") or {}
    if owner and owner.get("pid") != os.getpid() and \
            _process(owner.get("pid", -1), owner.get("create_time", 0)) is not None:
        raise ServerError(f"{path.parent} is in use by the ddhpose server with pid "
                          f"{owner['pid']} (see {path}); stop it first or choose another "
                          f"--data-dir")
    stopped = []
    leader = state.get("mlflow")
    if leader:
        members = _group_members(leader)
        if members:
            _terminate(members)
            stopped.append(f"mlflow server (pid {leader['pid']}, {len(members)} process(es))")
    if state.get("pgdata"):
        pgdata = Path(state["pgdata"])
        post = running_postmaster(pgdata)
        if post is not None:
            how = "fast shutdown" if stop_postgres(pgdata, post) else "SIGQUIT/SIGKILL"
            stopped.append(f"PostgreSQL (pid {post.pid}, {how}) in {pgdata}")
        prune_handle_pids(pgdata)
    path.unlink(missing_ok=True)
    return owner.get("pid"), stopped


def start_watchdog(path: Path) -> subprocess.Popen:
    """The process that stops what ``path`` records once this one dies (see module doc)."""
    code = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(code), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from ddhpose.tracking.leftovers import watchdog_main; "
         "sys.exit(watchdog_main(sys.argv[1:]))", WATCHDOG_MARK, str(path)],
        stdin=subprocess.PIPE, env=env, start_new_session=True)


def release_watchdog(watchdog: subprocess.Popen) -> None:
    """Tell the watchdog the stop was clean, and let it end."""
    with contextlib.suppress(OSError):
        assert watchdog.stdin is not None
        watchdog.stdin.write(b"done\n")
        watchdog.stdin.close()
    try:
        watchdog.wait(10)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def watchdog_main(argv: list[str]) -> int:
    """``ddhpose-server-watchdog STATE_FILE``: wait until stdin closes; unless the server wrote
    ``done`` first (its clean stop), stop what ``STATE_FILE`` records (:func:`stop_leftovers`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops all
    path = Path(argv[-1])
    said = sys.stdin.buffer.read()
    if said.strip() == b"done":
        return 0
    try:
        owner, stopped = stop_leftovers(path)
        msg = (f"ddhpose server (pid {owner}) ended without stopping what it started; stopped "
               f"{'; '.join(stopped) or 'nothing (all had ended)'}")
    except Exception as exc:  # nobody else is left to report it
        msg = f"ddhpose server watchdog: {type(exc).__name__}: {exc}"
    with contextlib.suppress(OSError):
        print(f"ddhpose server: {msg}", file=sys.stderr, flush=True)
    return 0


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when the parent dies (Linux's
    ``PR_SET_PDEATHSIG``); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec

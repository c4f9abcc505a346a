"""A team MLflow tracking server: ``mlflow server`` on PostgreSQL with artifact proxying.

By default PostgreSQL is embedded (the ``pgserver`` package ships its binaries; no root, no
containers) with its data folder under ``<data dir>/postgres``; or an existing PostgreSQL is used
through its ``postgresql://`` URI. Artifacts go to ``--artifacts-destination`` (a folder or an
``s3://`` URI) through the server (``--serve-artifacts``), so clients write none to their disk.

Stopping (SIGINT / SIGTERM) stops ``mlflow server`` first, then PostgreSQL cleanly (``pg_ctl stop
-w``: a "fast" shutdown that ends with a checkpoint), so the database is consistent and a restart
on the same data folder finds the earlier runs. The packages of the ``team`` extra (``pgserver``,
``psycopg``) are installed into the running interpreter when missing.

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
import importlib
import importlib.metadata
import importlib.util
import json
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

from ddhpose.errors import DDHPoseError

EXTRA = "team"
# mlflow server's background job workers (GenAI scorers, ~240 MB each) are not used here.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
START_TIMEOUT_S = 180.0
STATE_FILE = "ddhpose-server.json"  # in the data dir: what a running server started
WATCHDOG_MARK = "ddhpose-server-watchdog"  # in the watchdog's command line
PG_FAST_STOP_S = 60.0  # PostgreSQL's fast shutdown (a checkpoint) before an immediate one
GROUP_STOP_S = 15.0  # mlflow server's group after SIGTERM, before SIGKILL


class ServerError(DDHPoseError):
    """The tracking server (or its database) could not start or stop."""


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


# --- the optional extra ---------------------------------------------------------------------------


def extra_requirements(extra: str = EXTRA) -> list[str]:
    """The pinned requirements of ``ddhpose[extra]``: from the installed package's metadata, else
    (installed before the extra existed) from the ``pyproject.toml`` beside the package."""
    try:
        reqs = importlib.metadata.requires("ddhpose") or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    found = [r.split(";")[0].strip() for r in reqs if marker.search(r)]
    if found:
        return found
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (ImportError, OSError, ValueError):
        return []
    return list(data.get("project", {}).get("optional-dependencies", {}).get(extra, []))


def ensure_extra(log: Callable[[str], None], extra: str = EXTRA,
                 modules: tuple[str, ...] = ("pgserver", "psycopg")) -> None:
    """Import ``modules``; install the ``extra``'s pins into this interpreter if one is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reqs = extra_requirements(extra)
    if not reqs:
        raise ServerError(f"missing {', '.join(missing)} and ddhpose's [{extra}] extra is unknown "
                          f"to this interpreter ({sys.executable}); install it: pip install -e "
                          f"'.[{extra}]'")
    log(f"installing the [{extra}] extra: {' '.join(reqs)}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *reqs],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServerError(f"pip install {' '.join(reqs)} failed: {last}")
    importlib.invalidate_caches()


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


# --- what a server started, and stopping it after a crash -----------------------------------------


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


def _identity(pid: int) -> dict[str, Any]:
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


def _write_state(path: Path, state: dict[str, Any]) -> None:
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


def _start_watchdog(path: Path) -> subprocess.Popen:
    """The process that stops what ``path`` records once this one dies (see module doc)."""
    code = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(code), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from ddhpose.tracking.server import watchdog_main; "
         "sys.exit(watchdog_main(sys.argv[1:]))", WATCHDOG_MARK, str(path)],
        stdin=subprocess.PIPE, env=env, start_new_session=True)


def _release_watchdog(watchdog: subprocess.Popen) -> None:
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


def _die_with_parent() -> Callable[[], None] | None:
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
        "server": _identity(os.getpid()), "mlflow": None,
        "pgdata": None if config.backend_store_uri else str((config.data_dir / "postgres")
                                                             .resolve())}
    _write_state(state_path, state)
    watchdog = _start_watchdog(state_path)
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _backend(config, log) as backend_uri:
            env = dict(os.environ, **SERVER_ENV)
            proc = subprocess.Popen(mlflow_server_command(config, backend_uri), env=env,
                                    start_new_session=True, preexec_fn=_die_with_parent())
            state["mlflow"] = _identity(proc.pid)
            _write_state(state_path, state)
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
            _release_watchdog(watchdog)


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

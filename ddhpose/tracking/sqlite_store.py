"""The local SQLite MLflow store: refuse an unwritable one at once, serialise writers.

An unwritable store (a read-only folder or file system, or ``mlflow.db`` being a directory) makes
SQLAlchemy retry for about 100 s with dozens of warning lines before MLflow gives up;
:func:`store_problem` finds these cases up front so a stage goes offline with one warning.

Concurrent writers (two pipelines at once, e.g. ``dvc queue start -j 2``): SQLite itself waits
for a busy database, but two processes creating a fresh store both run MLflow's schema migration
and one fails (``table ... already exists``), and under heavy contention SQLite's own busy wait can
end in ``database is locked``. :func:`store_lock` therefore holds an exclusive advisory lock on
``<db>.lock`` around every group of MLflow calls; a SQLite store is local to one machine, so a
``flock`` covers every writer. For many writers on many machines use the server mode
(``ddhpose server``). The lock is re-entrant within a process (the stage's tracker, the model
registration and ``ddhpose tracking sync`` nest it), and threads of one process take turns.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's own busy wait is all there is
    fcntl = None  # type: ignore[assignment]

LOCK_WAIT_S = 120.0  # give up (and log offline) if another writer holds the lock this long


_GUARD = threading.Lock()
_HELD: dict[str, tuple[threading.RLock, list[int]]] = {}  # lock file -> (thread lock, [depth])


class StoreLockTimeout(TimeoutError):
    """Another process held the SQLite store's lock for longer than :data:`LOCK_WAIT_S`."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute or relative), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def store_problem(uri: str) -> str | None:
    """Why the SQLite store at ``uri`` cannot be written (one line), or None if it can (or if
    ``uri`` is not a SQLite URI). SQLite needs the folder writable too (journal files)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    if db.is_dir():
        return f"SQLite store {db} is a directory, not a database file"
    folder = db.parent
    if not folder.is_dir():
        return f"the folder {folder} of SQLite store {db} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} of SQLite store {db} is not writable (read-only or permission)"
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        return f"SQLite store {db} is not writable (read-only or permission)"
    return None


@contextlib.contextmanager
def store_lock(uri: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the exclusive lock of the SQLite store at ``uri`` (a no-op for other URIs).

    Re-entrant in one thread; waits at most ``wait_s`` seconds, then raises
    :class:`StoreLockTimeout`.
    """
    db = sqlite_path(uri)
    if db is None or fcntl is None:
        yield
        return
    name = os.path.abspath(f"{db}.lock")
    with _GUARD:
        rlock, depth = _HELD.setdefault(name, (threading.RLock(), [0]))
    deadline = time.monotonic() + wait_s
    if not rlock.acquire(timeout=wait_s):
        raise StoreLockTimeout(f"{name} held by another thread for more than {wait_s:.0f} s")
    try:
        if depth[0] > 0:  # this thread holds the file lock already
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
            return
        with _file_lock(name, deadline, wait_s):
            depth[0] = 1
            try:
                yield
            finally:
                depth[0] = 0
    finally:
        rlock.release()


@contextlib.contextmanager
def _file_lock(name: str, deadline: float, wait_s: float) -> Iterator[None]:
    fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreLockTimeout(f"{name} held by another process for more than "
                                           f"{wait_s:.0f} s") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

"""Error types with one-line, user-facing messages.

Every error raised for bad user input names the file (or params key) and what is wrong, in a
single line, so a pipeline log shows the cause without a traceback dig.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path


class DDHPoseError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(DDHPoseError, ValueError):
    """A data file is missing, unreadable, truncated or holds wrong content."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class UnknownLayoutError(DDHPoseError, ValueError):
    """A joint layout name that this package does not know."""


class ConfigError(DDHPoseError, ValueError):
    """A bad value in params.yaml (or another config source); names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"params key '{key}': {problem}")


class CheckpointError(DDHPoseError, ValueError):
    """A checkpoint that is corrupt, truncated or of an unknown format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


_CAUSES = {
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded (disk full)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (permission denied)",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a path component is not a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "already exists",
}


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def message_lines(exc: BaseException) -> list[str]:
    """The non-empty lines of an exception's message (a library's ``.message`` attribute when it
    has one, as MLflow's errors do), terminal colour codes removed, each stripped."""
    text = _ANSI.sub("", str(getattr(exc, "message", None) or exc))
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def one_line(exc: BaseException, *, first: bool = False) -> str:
    """An exception's message on one line: all its lines folded (``first``: the first line
    only), or the type's name when it has no message. The one helper behind every error line
    that quotes a library's exception."""
    lines = message_lines(exc)
    if not lines:
        return type(exc).__name__
    return lines[0] if first else " ".join(" ".join(lines).split())


def os_error_line(exc: OSError) -> str:
    """One line for an OS error: ``<file>: <cause>`` with the cause in words (disk full,
    read-only file system, permission denied, ...); used by the stage and command entry points."""
    cause = _CAUSES.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    cause = " ".join(str(cause).split())
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    where = " -> ".join(files)
    return f"{where}: {cause}" if where else cause

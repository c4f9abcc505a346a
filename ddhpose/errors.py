"""Error types with one-line, user-facing messages.

Every error raised for bad user input names the file (or params key) and what is wrong, in a
single line, so a pipeline log shows the cause without a traceback dig.
"""

from __future__ import annotations

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

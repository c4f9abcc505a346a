"""Set results aside instead of deleting them: ``<folder>/<UTC timestamp>/``.

Used when a new run must start where an older one left files that DVC never cached (an
interrupted or stale training run): nothing a user trained or computed is deleted.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path


def utc_stamp(now: dt.datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ`` of ``now`` (default: the current UTC time)."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def move_aside(paths: Iterable[Path], folder: Path) -> Path | None:
    """Move the existing ``paths`` into a new ``folder/<UTC timestamp>/`` (a suffix ``-2``, ``-3``
    … when that name is taken); return it, or None when none of ``paths`` exists.

    Files keep their names. The folder is made on the same file system as ``paths``, so each
    move is a rename: no copy, no extra disk space, nothing half-moved on a crash.
    """
    existing = [Path(p) for p in paths if Path(p).exists()]
    if not existing:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    stamp, n = utc_stamp(), 1
    while True:
        dest = folder / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            dest.mkdir()
            break
        except FileExistsError:
            n += 1
    for path in existing:
        os.replace(path, dest / path.name)
    return dest

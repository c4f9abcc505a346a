"""The project a pipeline runs in: where each stage reads and writes, and how stale results are
set aside instead of deleted. Config, pipeline, tracking and registry all use it, so it sits at the
package root and imports nothing of theirs.

- :class:`ProjectPaths`: the DVC outs of dvc.yaml, relative to the project root;
- :func:`project_root`: ``DDHPOSE_ROOT``, else the current directory (DVC runs stages there);
- :func:`move_aside`: ``<folder>/<UTC timestamp>/`` for results a new run must not overwrite (an
  interrupted or stale training run that DVC never cached): nothing a user trained or computed is
  deleted;
- :func:`shared_dir`: the folder of the recorded reference outputs and the real 3DHP
  annotations (``DDHPOSE_SHARED``; what it holds and how it was made: docs/faithfulness.md), used
  by the parity tests and ``ddhpose bench``; they skip without it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout holding the ddhpose package


def project_root() -> Path:
    """The project directory: ``DDHPOSE_ROOT`` if set, else the current directory (DVC runs stages
    from the directory holding dvc.yaml)."""
    return Path(os.environ.get("DDHPOSE_ROOT", os.getcwd())).resolve()


def shared_dir() -> Path:
    """``DDHPOSE_SHARED``, else a ``shared`` folder beside the checkout that holds this package
    (docs/faithfulness.md says what it holds; absent in a plain clone)."""
    return Path(os.environ.get("DDHPOSE_SHARED", REPO.parent / "shared"))

@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    def split(self, name: str) -> Path:
        return self.processed / f"{name}.npz"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def best(self) -> Path:
        return self.models / "best.pt"

    @property
    def init_dir(self) -> Path:
        """``models/init``: the resolved ``model.init`` (the init_model stage's output)."""
        return self.models / "init"

    @property
    def init_checkpoint(self) -> Path:
        return self.init_dir / "init.pt"

    @property
    def init_source(self) -> Path:
        return self.init_dir / "source.json"

    @property
    def train_log(self) -> Path:
        return self.models / "train_log.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def predictions(self) -> Path:
        return self.reports / "predictions"

    @property
    def eval_dir(self) -> Path:
        return self.reports / "eval"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def export(self) -> Path:
        return self.reports / "export"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

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

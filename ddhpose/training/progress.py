"""Progress reporting: tqdm bars (only on a terminal) and the per-epoch ``train_log.csv``.

The CSV is rewritten atomically from the full history after every epoch, so a crash never leaves
a torn line, and a resumed run rewrites it from the history stored in ``last.pt`` (rows of epochs
that were interrupted before their checkpoint disappear with the interrupted work).
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ddhpose.io import atomic_open

#: ``precision``: the denoiser's precision in training and validation of that epoch, e.g.
#: ``float32``, ``float32-tf32`` or ``bfloat16-autocast`` (:mod:`ddhpose.model.precision`)
LOG_COLUMNS = (
    "epoch", "lr", "loss_total", "loss_pos", "loss_len", "loss_dir", "val_mpjpe_mm", "seconds",
    "precision",
)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    return str(value)


def write_train_log(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Atomically (re)write ``path`` with a header and one row per epoch of ``history``.

    Missing values (e.g. ``val_mpjpe_mm`` without validation) are left empty.
    """
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOG_COLUMNS)
        for row in history:
            writer.writerow([_fmt(row.get(col)) for col in LOG_COLUMNS])


def read_train_log(path: Path) -> list[dict[str, str]]:
    """The rows of a ``train_log.csv`` as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    leave: bool = True,
    initial: int = 0,
) -> tqdm:
    """A tqdm bar with ETA on stderr; hidden when ``enabled`` is False or stderr is no terminal."""
    disable = (not enabled) or not sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=disable,
        leave=leave,
        initial=initial,
        file=sys.stderr,
        dynamic_ncols=True,
        unit="batch" if desc.startswith("epoch ") else "it",
    )

"""Training: the loop (:mod:`.loop`: DDP, resume, checkpoints, validation, progress) around
DDHPose, its configuration (:mod:`.config`), distributed set-up (:mod:`.distributed`), random
draws (:mod:`.draws`) and batches (:mod:`.batches`). Imports nothing from ``ddhpose.pipeline``.

``from ddhpose.training import train, TrainConfig`` works; the modules load on first use, so
that importing the light :mod:`.config` does not load the loop.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "train": "ddhpose.training.loop",
    "TrainConfig": "ddhpose.training.config",
    "TrainResult": "ddhpose.training.config",
    "init_distributed": "ddhpose.training.distributed",
    "DistInfo": "ddhpose.training.distributed",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ddhpose.training' has no attribute {name!r}")


__all__ = sorted(_LAZY)

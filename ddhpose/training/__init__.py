"""Training: the loop (DDP, resume, checkpoints, validation, progress) around DDHPose.

Public API: :func:`train`, :class:`TrainConfig`, :class:`TrainResult`,
:func:`init_distributed` / :class:`DistInfo`. Imports nothing from ``ddhpose.pipeline``.
"""

from ddhpose.training.config import TrainConfig, TrainResult
from ddhpose.training.distributed import DistInfo, init_distributed
from ddhpose.training.loop import train

__all__ = [
    "DistInfo",
    "TrainConfig",
    "TrainResult",
    "init_distributed",
    "train",
]

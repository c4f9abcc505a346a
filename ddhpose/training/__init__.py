"""Training: the loop (DDP, resume, checkpoints, validation, progress) around DDHPose.

Public API: :func:`train`, :class:`TrainConfig`, :class:`TrainResult`, :func:`coerce_train_config`,
:func:`init_distributed` / :class:`DistInfo`. Imports nothing from ``ddhpose.pipeline``.
"""

from ddhpose.training.config import TrainConfig, TrainResult, coerce_train_config
from ddhpose.training.distributed import DistInfo, init_distributed
from ddhpose.training.loop import train

__all__ = [
    "DistInfo",
    "TrainConfig",
    "TrainResult",
    "coerce_train_config",
    "init_distributed",
    "train",
]

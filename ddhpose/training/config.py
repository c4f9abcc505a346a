"""Training configuration and result types of the training library (no dependency on pipeline/).

:class:`TrainConfig` carries the same field names as ``ddhpose.pipeline.params.TrainParams``;
:func:`coerce_train_config` accepts either (or any object with those attributes).
Defaults are the reference recipe (docs/model.md "Paper settings").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddhpose.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings (reference defaults: docs/model.md "Paper settings").

    ``batch_clips`` is the GLOBAL batch: under DDP every rank takes its share of each batch.
    ``val_batch_clips`` (0 = same as ``batch_clips``) is the number of evaluation clips per
    validation sampler call. ``grad_clip`` 0 disables clipping; ``amp`` is honoured on CUDA only.
    """

    epochs: int = 400
    batch_clips: int = 4
    lr: float = 1e-4
    lr_decay: float = 0.993
    weight_decay: float = 0.1
    w_len: float = 1.0
    w_dir: float = 1.0
    loss_scaled_grad: bool = True
    flip_augment: bool = True
    seed: int = 1
    shuffle_seed: int = 1234
    checkpoint_every: int = 20
    validate: bool = True
    num_workers: int = 0
    grad_clip: float = 0.0
    amp: bool = False
    device: str = "auto"
    val_batch_clips: int = 0

    def validated(self) -> TrainConfig:
        """Return self after checking ranges; raises ConfigError naming the ``train.*`` key."""
        checks: list[tuple[str, bool, str]] = [
            ("epochs", self.epochs >= 0, "must be >= 0"),
            ("batch_clips", self.batch_clips >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("lr_decay", 0 < self.lr_decay <= 1, "must be in (0, 1]"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("checkpoint_every", self.checkpoint_every >= 0, "must be >= 0 (0 = never)"),
            ("num_workers", self.num_workers >= 0, "must be >= 0"),
            ("grad_clip", self.grad_clip >= 0, "must be >= 0 (0 = off)"),
            ("val_batch_clips", self.val_batch_clips >= 0, "must be >= 0"),
        ]
        for key, ok, problem in checks:
            if not ok:
                raise ConfigError(f"train.{key}", f"{problem}, got {getattr(self, key)!r}")
        return self

    @property
    def eval_batch_clips(self) -> int:
        return self.val_batch_clips or self.batch_clips

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields whose change alters the optimisation trajectory: a resume with different values is
# refused (epochs, checkpoint_every, validate, num_workers, device and val_batch_clips may change).
TRAJECTORY_FIELDS = (
    "batch_clips", "lr", "lr_decay", "weight_decay", "w_len", "w_dir", "loss_scaled_grad",
    "flip_augment", "seed", "shuffle_seed", "grad_clip", "amp",
)


def coerce_train_config(obj: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a TrainConfig, a TrainParams-like object or a mapping.

    Missing fields take the defaults; values are converted to the field types.
    """
    if isinstance(obj, TrainConfig):
        return obj.validated()
    getter = obj.get if isinstance(obj, dict) else lambda k, d: getattr(obj, k, d)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        raw = getter(f.name, default)
        try:
            if isinstance(default, bool):
                values[f.name] = bool(raw)
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = str(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train.{f.name}", f"cannot use {raw!r}: {exc}") from exc
    return TrainConfig(**values).validated()


@dataclass
class TrainResult:
    """What :func:`ddhpose.training.train` returns (identical on every rank).

    Attributes:
        best_path / last_path: ``out_dir/best.pt`` and ``out_dir/last.pt``.
        best_val_mpjpe_mm: best validation MPJPE (mm), None without validation.
        best_epoch: 1-based epoch of ``best.pt``.
        epochs_run: epochs trained in THIS call (0 when the run was already complete).
        epochs_done: epochs completed in total (== ``TrainConfig.epochs`` at the end).
        history: one dict per completed epoch (the rows of ``train_log.csv``).
    """

    best_path: Path
    last_path: Path
    best_val_mpjpe_mm: float | None
    best_epoch: int
    epochs_run: int
    epochs_done: int
    history: list[dict[str, float]] = field(default_factory=list)

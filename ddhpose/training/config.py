"""Training configuration and result types of the training library (no dependency on pipeline/).

:class:`TrainConfig` is the ``train`` section of ``params.yaml``: same field names, the one-line
docs that params.yaml shows as comments, and the only value rules (:meth:`TrainConfig.check`).
It has no defaults: the demo's values live in ``params.yaml``, the paper's in ``configs/``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddhpose.errors import ConfigError
from ddhpose.model.config import AMP_MODES, amp_mode

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def doc(text: str) -> Any:
    """A dataclass field without a default, documented by ``text`` (the params.yaml comment)."""
    return field(metadata={"doc": text})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings (params.yaml ``train``).

    ``batch_clips`` is the GLOBAL batch: under DDP every rank takes its share of each batch.
    """

    epochs: int = doc("training epochs (paper 400); 0 = adopt model.init, evaluate only")
    batch_clips: int = doc("clips per optimiser step (global batch)")
    lr: float = doc("AdamW initial learning rate (paper 1e-4 for 400 epochs)")
    lr_decay: float = doc("lr multiplier after every epoch, in (0, 1]")
    weight_decay: float = doc("AdamW weight decay")
    w_len: float = doc("weight of the bone-length loss")
    w_dir: float = doc("weight of the bone-direction loss")
    loss_scaled_grad: bool = doc("reference backward(loss): gradient scaled by the loss")
    flip_augment: bool = doc("random horizontal flip of training clips")
    seed: int = doc("torch/numpy/random seed")
    shuffle_seed: int = doc("seed of the clip shuffling generator")
    checkpoint_every: int = doc("save models/epoch_N.pt every N epochs (0 = never)")
    validate: bool = doc("validate (H=1, K=1) after every epoch; picks best.pt")
    val_batch_clips: int = doc("clips per validation sampler call (0 = train.batch_clips)")
    num_workers: int = doc("data loader worker processes")
    grad_clip: float = doc("max gradient norm (0 = off)")
    amp: str | bool = doc("mixed precision: off | fp16 | bf16 | auto (bf16 on GPUs/CPUs with bf16 "
                          "units, fp16 on older GPUs); true = auto, false = off")
    tf32: bool = doc("CUDA: float32 matmuls on TF32 tensor cores (false: IEEE float32, for "
                     "parity runs)")
    device: str = doc("auto | cpu | cuda | cuda:N")
    processes: int | str = doc("training processes started by the stage (DDP): N | auto (auto: one "
                               "per visible GPU, else 1); under torchrun, torchrun's count")
    reuse_host_memory: bool = doc("keep freed host memory in the heap for the next step (no "
                                  "page-fault churn: paper size 25 % less CPU time, 30 % more "
                                  "peak RSS)")

    def check(self) -> TrainConfig:
        """Return self after checking every value; ConfigError names the ``train.*`` key."""
        checks: list[tuple[str, bool, str]] = [
            ("epochs", self.epochs >= 0, "must be >= 0"),
            ("batch_clips", self.batch_clips >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("lr_decay", 0 < self.lr_decay <= 1, "must be in (0, 1]"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("w_len", self.w_len >= 0, "must be >= 0"),
            ("w_dir", self.w_dir >= 0, "must be >= 0"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("shuffle_seed", self.shuffle_seed >= 0, "must be >= 0"),
            ("checkpoint_every", self.checkpoint_every >= 0, "must be >= 0 (0 = never)"),
            ("val_batch_clips", self.val_batch_clips >= 0, "must be >= 0"),
            ("num_workers", self.num_workers >= 0, "must be >= 0"),
            ("grad_clip", self.grad_clip >= 0, "must be >= 0 (0 = off)"),
            ("device", bool(DEVICE_PATTERN.match(self.device)), "must be auto|cpu|cuda|cuda:N"),
            ("processes", self.processes == "auto" or (type(self.processes) is int
                                                       and self.processes >= 1),
             "must be auto or an integer >= 1"),
            ("amp", self.amp in (True, False, *AMP_MODES),
             f"must be one of {'|'.join(AMP_MODES)} (or true = auto, false = off)"),
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
# refused (epochs, checkpoint_every, validate, num_workers, device, processes, tf32 and
# val_batch_clips may change).
TRAJECTORY_FIELDS = (
    "batch_clips", "lr", "lr_decay", "weight_decay", "w_len", "w_dir", "loss_scaled_grad",
    "flip_augment", "seed", "shuffle_seed", "grad_clip", "amp",
)


def trajectory_changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The :data:`TRAJECTORY_FIELDS` whose value in ``stored`` (a checkpoint's ``train_config``)
    differs from ``now``; ``amp`` compared as a mode (``true`` = ``auto``, ``false`` = ``off``)."""
    def norm(key: str, value: Any) -> Any:
        return amp_mode(value) if key == "amp" and value in (True, False, *AMP_MODES) else value

    return [k for k in TRAJECTORY_FIELDS
            if k in stored and k in now and norm(k, stored[k]) != norm(k, now[k])]


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
        precision: the denoiser's precision in training and validation (``best.pt`` is chosen on
            validation in it), e.g. ``float32``, ``float32-tf32``, ``bfloat16-autocast``.
    """

    best_path: Path
    last_path: Path
    best_val_mpjpe_mm: float | None
    best_epoch: int
    epochs_run: int
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    precision: str = "float32"

"""Stage ``train``: ``data/processed`` -> ``models/{last,best}.pt``, ``models/train_log.csv``.

Runs as one process or under ``torchrun --nproc_per_node=N stages/train.py`` (DDP; only rank 0
writes and logs). ``models/last.pt`` persists between runs (dvc.yaml ``persist: true``): a killed
run resumes from it. When params.yaml changed the model or the optimisation trajectory since that
run (or it cannot resume for another reason, see :mod:`ddhpose.training.resume`), the stale run's
files are moved to ``models/stale/<UTC timestamp>/`` (never deleted: DVC never cached an
interrupted run) and training starts over; only ``train.epochs`` (and bookkeeping keys) may change
and continue the same run. ``models/`` must be writable: checked before any data is loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.data.processed import load_split
from ddhpose.errors import CheckpointError
from ddhpose.io import probe_writable
from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.model.config import ModelConfig
from ddhpose.pipeline.aside import move_aside
from ddhpose.pipeline.paths import ProjectPaths
from ddhpose.training.loop import train
from ddhpose.training.resume import resume_blockers

if TYPE_CHECKING:
    from ddhpose.pipeline.params import Params
    from ddhpose.pipeline.tracking import Tracker


def model_config(params: Any) -> ModelConfig:
    """The ``ModelConfig`` of params.yaml's ``model`` section for ``data.dataset``."""
    return ModelConfig.from_params(params.data.dataset, params.model).validate()


STALE_DIR = "stale"
RUN_FILES = ("last.pt", "best.pt", "epoch_*.pt", "train_log.csv")


def stale_run_reasons(last: Path, model_cfg: ModelConfig, train_params: Any) -> list[str]:
    """Why ``last.pt`` cannot resume the run params.yaml asks for (empty: it resumes).

    A corrupt file is not "stale": :class:`CheckpointError` propagates and nothing is moved.
    """
    ckpt = load_checkpoint(last, map_location="cpu")
    return resume_blockers(ckpt, model_cfg, train_params.as_dict())


def set_stale_run_aside(models: Path, reasons: list[str]) -> Path:
    """Move the stale run's files to ``models/stale/<UTC timestamp>/``; print where."""
    files = sorted({p for pattern in RUN_FILES for p in models.glob(pattern)})
    dest = move_aside(files, models / STALE_DIR)
    print(f"train: {models / 'last.pt'} cannot resume this run ({'; '.join(reasons)}); moved "
          f"{', '.join(p.name for p in files)} to {dest}; starting a new run", file=sys.stderr)
    return dest


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    cfg = model_config(params)
    last = paths.models / "last.pt"
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        probe_writable(paths.models)  # read-only / no permission: fail before an epoch runs
        if last.is_file():
            try:
                reasons = stale_run_reasons(last, cfg, params.train)
            except CheckpointError as exc:
                raise CheckpointError(last, f"{exc.args[0].split(': ', 1)[-1]}; move it away "
                                      "to start training over") from exc
            if reasons:
                set_stale_run_aside(paths.models, reasons)
    train_split = load_split(paths.split("train"))
    val_split = load_split(paths.split("test")) if params.train.validate else None
    tracker.log_params({f"train.{k}": v for k, v in vars(params.train).items()}
                       | {f"model.{k}": v for k, v in vars(params.model).items()})

    def log_fn(metrics: dict[str, float], epoch: int) -> None:
        tracker.log_metrics(metrics, step=epoch)

    result = train(cfg, params.train, train_split, val_split, paths.models, log_fn=log_fn)
    # the precision of training and of the validation that picked best.pt
    tracker.log_params({"train.precision": result.precision})
    for name in ("best.pt", "last.pt", "train_log.csv"):
        if (paths.models / name).is_file():
            tracker.log_artifact(paths.models / name, "models")
    best = result.best_val_mpjpe_mm
    if best is not None:
        tracker.log_metrics({"best_val_mpjpe_mm": float(best)}, also_parent=True)
    print(f"train: {result.epochs_run} epoch(s) run; best validation MPJPE "
          f"{'-' if best is None else f'{best:.2f}'} mm (epoch {result.best_epoch}, "
          f"{result.precision}) -> {paths.models}")

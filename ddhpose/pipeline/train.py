"""Stage ``train``: ``data/processed`` -> ``models/{last,best}.pt``, ``models/train_log.csv``.

Runs as one process or under ``torchrun --nproc_per_node=N stages/train.py`` (DDP; only rank 0
writes and logs). ``models/last.pt`` persists between runs (dvc.yaml ``persist: true``): a killed
run resumes from it. When params.yaml changed the model or the optimisation trajectory since that
run, the stale run files are removed and training starts over (DVC keeps the old outputs in its
cache); only ``train.epochs`` (and bookkeeping keys) may change and continue the same run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddhpose.data.processed import load_split
from ddhpose.errors import CheckpointError
from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.model.config import ModelConfig
from ddhpose.pipeline.paths import ProjectPaths
from ddhpose.training.config import trajectory_changes
from ddhpose.training.loop import train

if TYPE_CHECKING:
    from ddhpose.pipeline.params import Params
    from ddhpose.pipeline.tracking import Tracker


def model_config(params: Any) -> ModelConfig:
    """The ``ModelConfig`` of params.yaml's ``model`` section for ``data.dataset``."""
    return ModelConfig.from_params(params.data.dataset, params.model).validate()


def stale_run_reason(last: Path, model_cfg: ModelConfig, train_params: Any) -> str | None:
    """Why ``last.pt`` belongs to a different run (None when training may resume from it).

    A corrupt file is not "stale": :class:`CheckpointError` propagates so nothing is deleted.
    """
    ckpt = load_checkpoint(last, map_location="cpu")
    have = dict(ckpt.get("model_config") or {})
    want = dataclasses.asdict(model_cfg)
    changed = [f"model.{k}" for k in want if have.get(k) != want[k]]
    stored = (ckpt.get("train_state") or {}).get("train_config") or {}
    now = train_params.as_dict()
    changed += [f"train.{k}" for k in trajectory_changes(stored, now)]
    return ", ".join(changed) or None


def _remove_stale(models: Path, reason: str) -> None:
    removed = []
    for pattern in ("last.pt", "best.pt", "epoch_*.pt", "train_log.csv"):
        for path in models.glob(pattern):
            path.unlink()
            removed.append(path.name)
    print(f"train: params changed since the run in {models} ({reason}); starting a new run "
          f"(removed {', '.join(sorted(removed))})")


def run(params: Params, root: Path, tracker: Tracker) -> None:
    paths = ProjectPaths(root)
    cfg = model_config(params)
    last = paths.models / "last.pt"
    if last.is_file() and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        try:
            reason = stale_run_reason(last, cfg, params.train)
        except CheckpointError as exc:
            raise CheckpointError(last, f"{exc.args[0].split(': ', 1)[-1]} — delete it to "
                                  "start training over") from exc
        if reason:
            _remove_stale(paths.models, reason)
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

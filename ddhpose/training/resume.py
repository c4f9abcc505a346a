"""The one rule deciding whether a training checkpoint can resume a run.

A checkpoint resumes a run when it was written by the same model configuration, with the same
settings that shape the optimisation trajectory (:data:`ddhpose.training.config.TRAJECTORY_FIELDS`;
``train.epochs`` and bookkeeping keys may change), and holds a complete training state. The
training loop refuses anything else; the ``train`` stage sets such a run aside and starts over.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ddhpose.model import ModelConfig
from ddhpose.training.config import trajectory_changes

# what a checkpoint's train_state must hold to continue a run exactly
RESUME_STATE_KEYS = ("epoch", "lr", "shuffler", "rng", "history")


def resume_blockers(ckpt: dict[str, Any], model_cfg: ModelConfig,
                    train_cfg: dict[str, Any]) -> list[str]:
    """Why ``ckpt`` (a loaded checkpoint dict) cannot resume a run of ``model_cfg`` with the
    training settings ``train_cfg`` (the ``TrainConfig`` fields as a dict); empty when it can.

    One text per difference, e.g. ``"model.width: 16 stored vs 32 requested"``,
    ``"train.lr: 0.001 stored vs 0.002 requested"``, ``"train_state lacks 'rng'"``.
    """
    want = dataclasses.asdict(model_cfg)
    have = dict(ckpt.get("model_config") or {})
    reasons = [f"model.{k}: {have.get(k)!r} stored vs {want.get(k)!r} requested"
               for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
    state = ckpt.get("train_state") or {}
    stored = state.get("train_config") or {}
    reasons += [f"train.{k}: {stored[k]!r} stored vs {train_cfg[k]!r} requested"
                for k in trajectory_changes(stored, train_cfg)]
    if not reasons:
        reasons += [f"train_state lacks '{k}' (not a resumable training checkpoint)"
                    for k in RESUME_STATE_KEYS if k not in state]
    return reasons

"""The one rule deciding whether a training checkpoint can resume a run.

A checkpoint resumes a run when it was written by the same model configuration, with the same
settings that shape the optimisation trajectory (:data:`ddhpose.training.config.TRAJECTORY_FIELDS`;
``train.epochs`` and bookkeeping keys may change), on the same data, and holds a complete
training state. The training loop refuses anything else; the ``train`` stage sets such a run
aside and starts over.

The data is identified by :func:`data_fingerprint`: the sha256 of the training split's arrays
(and of the validation split's, when the run validates), stored in the checkpoint's
``train_state["data_sha256"]``. It hashes the arrays, not the ``.npz`` file, so the same data
written again (a rerun of preprocess, whose zip entries carry new timestamps) is the same data,
while other subjects, actions, cameras, frames or seeds are not. A checkpoint without a stored
fingerprint (written before this rule) cannot show which data it was trained on and does not
resume. The validation split is compared only when both the run and the request validate
(``train.validate`` may change).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ddhpose.model import ModelConfig
from ddhpose.training.config import trajectory_changes

# what a checkpoint's train_state must hold to continue a run exactly
RESUME_STATE_KEYS = ("epoch", "lr", "shuffler", "rng", "history")
#: the train_state key of :func:`data_fingerprint`
DATA_KEY = "data_sha256"
_SHOWN = 12  # hex digits of a hash shown in a reason


def split_sha256(split: Any) -> str:
    """sha256 (64 hex digits) of a processed split's content: every array's name, dtype, shape
    and bytes and the scalar fields (``split.arrays()``, in name order). Independent of the file
    it was read from."""
    digest = hashlib.sha256()
    for name, value in sorted(split.arrays().items()):
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            digest.update(arr.tobytes())
        else:
            digest.update(f"{name}|{type(value).__name__}|{value}|".encode())
    return digest.hexdigest()


def data_fingerprint(train_split: Any, val_split: Any | None) -> dict[str, str | None]:
    """``{"train": sha256, "val": sha256 or None}`` of the splits a run trains and validates on
    (``val_split`` None: the run does not validate)."""
    return {"train": split_sha256(train_split),
            "val": None if val_split is None else split_sha256(val_split)}


def _data_changes(stored: Any, now: Mapping[str, str | None]) -> list[str]:
    if not isinstance(stored, Mapping) or not stored.get("train"):
        return ["data: the run predates the training-data fingerprint (its train_state stores "
                "no data sha256), so it cannot show it was trained on this data"]
    reasons = []
    for key, what, verb in (("train", "train split", "trained"),
                            ("val", "validation split", "validated")):
        have, want = stored.get(key), now.get(key)
        if have and want and have != want:
            reasons.append(f"data: the run was {verb} on other data ({what} sha256 "
                           f"{str(have)[:_SHOWN]}… stored vs {str(want)[:_SHOWN]}… now)")
    return reasons


def resume_blockers(ckpt: dict[str, Any], model_cfg: ModelConfig,
                    train_cfg: dict[str, Any], data: Mapping[str, str | None]) -> list[str]:
    """Why ``ckpt`` (a loaded checkpoint dict) cannot resume a run of ``model_cfg`` with the
    training settings ``train_cfg`` (the ``TrainConfig`` fields as a dict) on the data whose
    :func:`data_fingerprint` is ``data``; empty when it can.

    One text per difference, e.g. ``"model.width: 16 stored vs 32 requested"``,
    ``"train.lr: 0.001 stored vs 0.002 requested"``, ``"train_state lacks 'rng'"``,
    ``"data: the run was trained on other data (train split sha256 3f2a… stored vs 9c01… now)"``.
    """
    want = dataclasses.asdict(model_cfg)
    have = dict(ckpt.get("model_config") or {})
    reasons = [f"model.{k}: {have.get(k)!r} stored vs {want.get(k)!r} requested"
               for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
    state = ckpt.get("train_state") or {}
    stored = state.get("train_config") or {}
    reasons += [f"train.{k}: {stored[k]!r} stored vs {train_cfg[k]!r} requested"
                for k in trajectory_changes(stored, train_cfg)]
    missing = [k for k in RESUME_STATE_KEYS if k not in state]
    if missing:
        if not reasons:
            reasons += [f"train_state lacks '{k}' (not a resumable training checkpoint)"
                        for k in missing]
    else:
        reasons += _data_changes(state.get(DATA_KEY), data)
    return reasons

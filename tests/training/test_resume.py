"""The one rule deciding whether a checkpoint resumes a run (used by the loop and the stage)."""

from __future__ import annotations

import dataclasses

from demo_config import demo_train

from ddhpose.training.resume import RESUME_STATE_KEYS, resume_blockers
from ddhpose.training.smoke import tiny_model_config


def _ckpt(model_cfg, train_cfg, **state):
    full = {k: 0 for k in RESUME_STATE_KEYS} | {"train_config": train_cfg.as_dict()} | state
    return {"model_config": dataclasses.asdict(model_cfg), "train_state": full}


def test_same_run_resumes_and_epochs_may_grow():
    cfg, train = tiny_model_config(), demo_train(epochs=2)
    assert resume_blockers(_ckpt(cfg, train), cfg, demo_train(epochs=9).as_dict()) == []


def test_every_difference_is_named():
    cfg, train = tiny_model_config(), demo_train(lr=1e-3)
    wider = dataclasses.replace(cfg, width=32)
    reasons = resume_blockers(_ckpt(cfg, train), wider, demo_train(lr=5e-4).as_dict())
    assert reasons == ["model.width: 16 stored vs 32 requested",
                       "train.lr: 0.001 stored vs 0.0005 requested"]


def test_an_incomplete_training_state_cannot_resume():
    cfg, train = tiny_model_config(), demo_train()
    ckpt = _ckpt(cfg, train)
    del ckpt["train_state"]["rng"]
    assert resume_blockers(ckpt, cfg, train.as_dict()) == [
        "train_state lacks 'rng' (not a resumable training checkpoint)"]

"""The one rule deciding whether a checkpoint resumes a run (used by the loop and the stage):
the model, the trajectory settings, a complete training state and the data it was trained on."""

from __future__ import annotations

import dataclasses

from demo_config import demo_train

from ddhpose.data.processed import save_split
from ddhpose.synthetic.smoke import synthetic_split
from ddhpose.training.resume import (
    RESUME_STATE_KEYS,
    data_fingerprint,
    resume_blockers,
    split_sha256,
)
from ddhpose.training.smoke import tiny_model_config

DATA = {"train": "a" * 64, "val": None}


def _ckpt(model_cfg, train_cfg, **state):
    full = ({k: 0 for k in RESUME_STATE_KEYS} | {"train_config": train_cfg.as_dict()}
            | {"data_sha256": DATA} | state)
    return {"model_config": dataclasses.asdict(model_cfg), "train_state": full}


def test_same_run_resumes_and_epochs_may_grow():
    cfg, train = tiny_model_config(), demo_train(epochs=2)
    assert resume_blockers(_ckpt(cfg, train), cfg, demo_train(epochs=9).as_dict(),
                           DATA) == []


def test_every_difference_is_named():
    cfg, train = tiny_model_config(), demo_train(lr=1e-3)
    wider = dataclasses.replace(cfg, width=32)
    reasons = resume_blockers(_ckpt(cfg, train), wider, demo_train(lr=5e-4).as_dict(), DATA)
    assert reasons == ["model.width: 16 stored vs 32 requested",
                       "train.lr: 0.001 stored vs 0.0005 requested"]


def test_an_incomplete_training_state_cannot_resume():
    cfg, train = tiny_model_config(), demo_train()
    ckpt = _ckpt(cfg, train)
    del ckpt["train_state"]["rng"]
    assert resume_blockers(ckpt, cfg, train.as_dict(), DATA) == [
        "train_state lacks 'rng' (not a resumable training checkpoint)"]


def test_other_training_data_cannot_resume_and_the_reason_names_both_hashes():
    cfg, train = tiny_model_config(), demo_train()
    now = {"train": "b" * 64, "val": None}
    assert resume_blockers(_ckpt(cfg, train), cfg, train.as_dict(), now) == [
        f"data: the run was trained on other data (train split sha256 {'a' * 12}… stored vs "
        f"{'b' * 12}… now)"]


def test_other_validation_data_cannot_resume_when_both_runs_validate():
    cfg, train = tiny_model_config(), demo_train()
    stored = {"train": "a" * 64, "val": "c" * 64}
    ckpt = _ckpt(cfg, train, data_sha256=stored)
    assert resume_blockers(ckpt, cfg, train.as_dict(), stored) == []
    assert resume_blockers(ckpt, cfg, train.as_dict(), stored | {"val": "d" * 64}) == [
        f"data: the run was validated on other data (validation split sha256 {'c' * 12}… "
        f"stored vs {'d' * 12}… now)"]
    # train.validate may change (it is no trajectory setting): no validation split, no conflict
    assert resume_blockers(ckpt, cfg, train.as_dict(), stored | {"val": None}) == []
    assert resume_blockers(_ckpt(cfg, train), cfg, train.as_dict(), stored) == []


def test_a_checkpoint_from_before_the_data_rule_cannot_resume():
    cfg, train = tiny_model_config(), demo_train()
    ckpt = _ckpt(cfg, train)
    del ckpt["train_state"]["data_sha256"]
    assert resume_blockers(ckpt, cfg, train.as_dict(), DATA) == [
        "data: the run predates the training-data fingerprint (its train_state stores no data "
        "sha256), so it cannot show it was trained on this data"]


def test_the_fingerprint_is_of_the_arrays_not_of_the_file(tmp_path):
    from ddhpose.data.processed import load_split

    split = synthetic_split("h36m", 2, 12, seed=0)
    save_split(tmp_path / "a.npz", split)
    save_split(tmp_path / "b.npz", split)  # the same data written again (npz zip times differ)
    a, b = load_split(tmp_path / "a.npz"), load_split(tmp_path / "b.npz")
    assert split_sha256(a) == split_sha256(b) == split_sha256(split)
    assert len(split_sha256(a)) == 64
    other = synthetic_split("h36m", 2, 12, seed=1)
    assert split_sha256(other) != split_sha256(split)
    renamed = synthetic_split("h36m", 2, 12, seed=0)
    renamed.seq_subject[:] = "S5"  # same poses, another subject: other data
    assert split_sha256(renamed) != split_sha256(split)
    assert data_fingerprint(split, None) == {"train": split_sha256(split), "val": None}
    assert data_fingerprint(split, other)["val"] == split_sha256(other)

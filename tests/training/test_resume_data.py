"""The training loop stores the fingerprint of its data and refuses to resume on other data."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_train

from ddhpose.errors import CheckpointError
from ddhpose.model.checkpoint import load_checkpoint
from ddhpose.synthetic.smoke import synthetic_split
from ddhpose.training import train
from ddhpose.training.smoke import tiny_model_config


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(epochs: int, validate: bool = False):
    return demo_train(epochs=epochs, batch_clips=4, lr=1e-3, checkpoint_every=0, device="cpu",
                      validate=validate, num_workers=0)


def test_the_loop_refuses_to_continue_a_run_on_other_data(tmp_path):
    from ddhpose.training.resume import split_sha256

    cfg = tiny_model_config()
    first = synthetic_split("h36m", 2, 20, seed=0)
    val = synthetic_split("h36m", 1, 20, seed=1)
    train(cfg, _cfg(1, validate=True), first, val, tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")["train_state"]
    assert state["data_sha256"] == {"train": split_sha256(first), "val": split_sha256(val)}

    other = synthetic_split("h36m", 2, 20, seed=3)
    with pytest.raises(CheckpointError, match=r"data: the run was trained on other data"):
        train(cfg, _cfg(2, validate=True), other, val, tmp_path)
    # the same data (an equal copy) continues the run; without validation too
    same = synthetic_split("h36m", 2, 20, seed=0)
    assert train(cfg, _cfg(2), same, None, tmp_path).epochs_run == 1

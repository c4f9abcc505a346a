"""One hypotheses bound for ``ddhpose infer``, the library and the served model
(:mod:`ddhpose.inference.limits`): H = MAX_HYPOTHESES runs, MAX_HYPOTHESES + 1 is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from demo_config import demo_model

from ddhpose.cli import main
from ddhpose.inference.limits import MAX_HYPOTHESES
from ddhpose.keypoints import save_keypoints_json
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose

SIZE = (640.0, 480.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=8, depth=1, heads=2, frames=9, timesteps=50)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model)


def _kp(path, t=9):
    rng = np.random.default_rng(0)
    kp = rng.uniform(200, 400, size=(1, 17, 2)) + rng.normal(0, 2, (t, 17, 2))
    save_keypoints_json(path, kp, "h36m17", SIZE)
    return path


def test_the_served_model_and_infer_share_one_bound():
    from ddhpose.commands import infer as infer_command
    from ddhpose.registry import request

    assert infer_command.MAX_HYPOTHESES is MAX_HYPOTHESES
    assert request.MAX_HYPOTHESES is MAX_HYPOTHESES


def test_infer_refuses_one_hypothesis_more_than_the_bound(tmp_path, ckpt, capsys):
    kp = _kp(tmp_path / "kp.json")
    rc = main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(kp), "--out",
               str(tmp_path / "o.npz"), "--hypotheses", str(MAX_HYPOTHESES + 1)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"--hypotheses must be between 1 and {MAX_HYPOTHESES}" in err
    assert not (tmp_path / "o.npz").exists()


def test_infer_runs_at_the_bound(tmp_path, ckpt):
    kp = _kp(tmp_path / "kp.json")
    rc = main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(kp), "--out",
               str(tmp_path / "o.npz"), "--hypotheses", str(MAX_HYPOTHESES)])
    assert rc == 0 and (tmp_path / "o.npz").is_file()


def test_the_library_bounds_hypotheses(ckpt):
    from ddhpose.inference.infer import infer
    from ddhpose.model.checkpoint import load_model

    with pytest.raises(ValueError, match=f"between 1 and {MAX_HYPOTHESES}"):
        infer(load_model(ckpt), np.full((9, 17, 2), 300.0), SIZE,
              hypotheses=MAX_HYPOTHESES + 1)

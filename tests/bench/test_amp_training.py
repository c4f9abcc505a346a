"""The amp-training comparison: both runs go through train.amp, and the step losses are
recorded."""

from __future__ import annotations

from pathlib import Path

import torch
from demo_config import demo_model

from ddhpose.bench.amp_training import recorded_step_losses
from ddhpose.model import DDHPose


def test_each_mode_trains_through_train_amp():
    """The comparison uses the users' switch, train.amp (not a patch of the model): the bf16 run
    builds the model the training loop builds for train.amp: bf16 on this CPU."""
    from ddhpose.bench.amp_training import run_configs
    from ddhpose.model.precision import autocast_dtype

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    _, f32 = run_configs(params, 1, "float32")
    model_cfg, bf16 = run_configs(params, 1, "bfloat16")
    assert (f32.amp, bf16.amp, bf16.epochs, bf16.device) == ("off", "bf16", 1, "cpu")
    assert autocast_dtype(f32.amp, torch.device("cpu")) is None
    assert autocast_dtype(bf16.amp, torch.device("cpu")) == torch.bfloat16
    bf16.check()
    assert DDHPose(model_cfg, autocast=torch.bfloat16).autocast == torch.bfloat16


def test_step_losses_are_recorded_and_the_hook_removed():
    from ddhpose.training import loop

    original = loop.pose_losses
    seen: list[float] = []
    with recorded_step_losses(seen):
        target = torch.randn(1, 3, 17, 3, generator=torch.Generator().manual_seed(2))
        loop.pose_losses(target + 0.1, target, DDHPose(demo_model(width=16, depth=2,
                                                                  frames=9)).skeleton)
    assert loop.pose_losses is original and len(seen) == 1 and seen[0] > 0

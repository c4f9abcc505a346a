"""The bfloat16-autocast switch of the amp-training comparison: train-mode forwards with grad run
in bfloat16 (float32 output), everything else stays float32, and the switch is undone."""

from __future__ import annotations

import torch
from demo_config import demo_model

from ddhpose.bench.amp_training import cpu_bf16_training_forward, recorded_step_losses
from ddhpose.model import DDHPose
from ddhpose.model.denoiser import HSTDenoiser


def test_bf16_switch_covers_only_the_training_forward():
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=32, depth=2, frames=9, drop_path=0.0))
    x2d, x3d = torch.randn(2, 9, 17, 2), torch.randn(2, 9, 17, 3) * 0.2
    noise = [t for _ in range(2)
             for t in (torch.tensor([300]), torch.randn(9, 17, 3), torch.randn(9, 17, 1))]
    original = HSTDenoiser.forward
    f32 = model.train()(x2d, x3d, noise=list(noise))
    with cpu_bf16_training_forward():
        bf16 = model(x2d, x3d, noise=list(noise))
        with torch.no_grad():
            plain = model(x2d, x3d, noise=list(noise))  # no grad: float32
    assert HSTDenoiser.forward is original
    assert bf16.dtype == torch.float32 and bf16.requires_grad
    dev = (bf16 - f32).abs().max().item()
    assert 0.0 < dev < 0.05
    torch.testing.assert_close(plain, f32.detach(), rtol=0, atol=1e-6)


def test_step_losses_are_recorded_and_the_hook_removed():
    from ddhpose.training import loop

    original = loop.pose_losses
    seen: list[float] = []
    with recorded_step_losses(seen):
        target = torch.randn(1, 3, 17, 3, generator=torch.Generator().manual_seed(2))
        loop.pose_losses(target + 0.1, target, DDHPose(demo_model(width=16, depth=2,
                                                                  frames=9)).skeleton)
    assert loop.pose_losses is original and len(seen) == 1 and seen[0] > 0

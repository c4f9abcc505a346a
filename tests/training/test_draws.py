"""Drop-path masks of a training step: drawn all at once before the forward (one buffer, one
copy), equal to the per-call draws of the same generator."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_model

from ddhpose.model import DDHPose
from ddhpose.model.layers import set_drop_path_mask_fn
from ddhpose.training.draws import GlobalDropPath


def _forward_masks(model: DDHPose, provider: GlobalDropPath, x2d, x3d, noise):
    """One train-mode forward with ``provider`` installed; returns (pred, masks handed out,
    generator state right before and right after the forward)."""
    handed: list[torch.Tensor] = []

    def record(shape, keep, x):
        mask = provider(shape, keep, x)
        handed.append(mask.clone())
        return mask

    set_drop_path_mask_fn(model, record)
    state = provider.gen.get_state()
    pred = model(x2d, x3d, noise=list(noise))
    return pred, handed, state, provider.gen.get_state()


def test_predrawn_masks_equal_per_call_draws():
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=3, frames=9, heads=2, drop_path=0.4)).train()
    plan = model.dir_bone_estimator.drop_path_plan()
    # depth 3: 2 hierarchical layers x (spatial, temporal) x (attention, MLP); rate 0 block drawn
    # nothing; spatial rows per clip = F, temporal = J
    assert [r for r, _ in plan] == [9, 9, 17, 17] * 2
    assert [round(k, 6) for _, k in plan] == [0.8] * 4 + [0.6] * 4
    g = torch.Generator().manual_seed(3)
    x2d = torch.randn(2, 9, 17, 2, generator=g)
    x3d = torch.randn(2, 9, 17, 3, generator=g) * 0.2
    x3d[..., 0, :] = 0
    noise = [torch.tensor([500]), torch.randn(9, 17, 3, generator=g), torch.randn(9, 17, 1,
             generator=g), torch.tensor([20]), torch.randn(9, 17, 3, generator=g),
             torch.randn(9, 17, 1, generator=g)]
    results = []
    for provider in (GlobalDropPath(), GlobalDropPath(plan, device="cpu")):
        provider.start_epoch(seed=7, epoch=2)
        provider.set_batch(global_clips=5, offset=1, local_clips=2)  # rank owning clips 1, 2
        results.append(_forward_masks(model, provider, x2d, x3d, noise))
        # a second step continues the same stream
        provider.set_batch(global_clips=5, offset=3, local_clips=2)
        results.append(_forward_masks(model, provider, x2d, x3d, noise))
    per_call, predrawn = results[:2], results[2:]
    for a, b in zip(per_call, predrawn, strict=True):
        assert len(a[1]) == len(b[1]) == len(plan)
        for ma, mb in zip(a[1], b[1], strict=True):
            assert torch.equal(ma, mb)
        assert torch.equal(a[0], b[0])
        assert torch.equal(a[3], b[3])  # the generator ends in the same state
    for _, _, before, after in predrawn:
        assert torch.equal(before, after)  # nothing drawn inside the forward
    assert not torch.equal(per_call[0][1][0], per_call[1][1][0])


def test_predrawn_masks_refuse_a_second_forward_without_set_batch():
    model = DDHPose(demo_model(width=16, depth=2, frames=9, heads=2, drop_path=0.4)).train()
    provider = GlobalDropPath(model.dir_bone_estimator.drop_path_plan())
    provider.start_epoch(seed=0, epoch=0)
    provider.set_batch(global_clips=1, offset=0, local_clips=1)
    set_drop_path_mask_fn(model, provider)
    x2d, x3d = torch.randn(1, 9, 17, 2), torch.randn(1, 9, 17, 3)
    model(x2d, x3d)
    with pytest.raises(RuntimeError, match="set_batch"):
        model(x2d, x3d)


def test_keep_freed_memory_switches_and_restores():
    import platform

    from ddhpose.training.memory import keep_freed_memory

    applied = keep_freed_memory(True)
    try:
        assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
        big = torch.empty(64 * 2**20, dtype=torch.uint8)  # above glibc's mmap threshold
        big.fill_(1)
        del big
    finally:
        assert keep_freed_memory(False) == applied

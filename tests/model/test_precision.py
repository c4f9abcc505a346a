"""Precision options on the CPU: amp modes, sampling dtypes, TF32 switch, CPU bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from ddhpose.bench.plan import bench_model
from ddhpose.model import DDHPose
from ddhpose.model.fused import onednn_bf16_cpu
from ddhpose.model.precision import (
    amp_mode,
    autocast_dtype,
    matmul_precision,
    precision_label,
    sample_dtype,
    tf32_enabled,
)

CPU = torch.device("cpu")


def test_amp_modes_and_the_yaml_booleans():
    assert amp_mode(True) == "auto" and amp_mode(False) == "off"
    assert [amp_mode(m) for m in ("off", "fp16", "bf16", "auto")] == ["off", "fp16", "bf16", "auto"]
    for bad in ("on", "float16", 1, None):
        with pytest.raises(ValueError, match=r"off\|fp16\|bf16\|auto"):
            amp_mode(bad)


def test_cpu_resolution():
    bf16 = onednn_bf16_cpu()
    assert autocast_dtype("off", CPU) is None and autocast_dtype(False, CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("fp16", CPU) is None  # float16 autocast needs CUDA
    assert autocast_dtype("auto", CPU) is autocast_dtype(True, CPU)
    assert autocast_dtype("auto", CPU) is (torch.bfloat16 if bf16 else None)
    assert sample_dtype("auto", CPU) is (torch.bfloat16 if bf16 else torch.float32)
    assert sample_dtype("float16", CPU) is torch.float16
    assert sample_dtype("float32", CPU) is torch.float32
    with pytest.raises(ValueError):
        sample_dtype("half", CPU)
    assert precision_label(None, CPU, tf32=True) == "float32"
    assert precision_label(torch.bfloat16, CPU, tf32=True) == "bfloat16-autocast"
    assert precision_label(torch.bfloat16, CPU, tf32=True, autocast=False) == "bfloat16-weights"
    assert precision_label(None, torch.device("cuda"), tf32=True) == "float32-tf32"
    assert precision_label(torch.float16, torch.device("cuda"), tf32=True) == "float16-autocast"


def _model(**kw) -> DDHPose:
    torch.manual_seed(0)
    return DDHPose(bench_model(32, 2, 9), **kw)


def test_tf32_switch_restores_and_leaves_cpu_float32_untouched():
    model = _model().eval()
    g = torch.Generator().manual_seed(0)
    x2d = torch.randn(2, 9, 17, 2, generator=g)
    before = torch.backends.cuda.matmul.fp32_precision
    outs = []
    for tf32 in (False, True):
        with matmul_precision(tf32):
            assert tf32_enabled() is tf32
            outs.append(model.sample(x2d, 2, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.backends.cuda.matmul.fp32_precision == before
    assert torch.equal(outs[0], outs[1])


def test_bf16_autocast_runs_on_the_cpu():
    """``DDHPose(autocast=torch.bfloat16)`` really computes in bfloat16 on a CPU: close to the
    float32 result, not equal; gradients reach the float32 parameters."""
    ref, amp = _model(), _model(autocast=torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    x2d = torch.randn(2, 9, 17, 2, generator=g)
    x3d = torch.randn(2, 9, 17, 3, generator=g) * 0.2
    x3d[..., 0, :] = 0
    noise = [x for _ in range(2) for x in (torch.tensor([500]), torch.randn(9, 17, 3, generator=g),
                                           torch.randn(9, 17, 1, generator=g))]
    a = ref(x2d, x3d, noise=noise)
    b = amp(x2d, x3d, noise=noise)
    assert b.dtype == torch.float32
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, a, atol=0.1, rtol=0.1)
    b.square().mean().backward()
    w = amp.dir_bone_estimator.Spatial_patch_to_embedding.weight
    assert w.dtype == torch.float32 and w.grad is not None and torch.isfinite(w.grad).all()

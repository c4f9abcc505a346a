"""The fused inference path (``ddhpose.model.fused``): oneDNN / addmm linears with the residual
and GELU folded in, prepacked weights. Same outputs as the plain modules (float32 round-off),
including against the reference's recorded outputs. No timing here (see ``ddhpose bench``)."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_model

from ddhpose.model import DDHPose
from ddhpose.model import fused as fused_mod

TOL = 1e-5


@pytest.fixture
def force_fused(monkeypatch):
    """Take the fused path at every width (the fixtures' width 64 is below the default cut)."""
    monkeypatch.setattr(fused_mod, "FUSE_MIN_WIDTH", 0)


@pytest.fixture
def no_onednn(monkeypatch):
    """The fallback a torch build without oneDNN (or a CUDA tensor) takes: in-place addmm."""
    monkeypatch.setattr(fused_mod, "onednn_available", lambda: False)


def _plain(model: DDHPose, *args) -> torch.Tensor:
    """The plain module path: grad mode on (what training runs), no parameter needs grad."""
    with torch.enable_grad():
        for p in model.parameters():
            p.requires_grad_(False)
        return model.dir_bone_estimator(*args)


def _fused(model: DDHPose, *args) -> torch.Tensor:
    with torch.no_grad():
        return model.dir_bone_estimator(*args)


def _inputs(b: int, h: int, f: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, 17, 2, generator=g), torch.randn(b, h, f, 17, 3, generator=g),
            torch.randn(b, h, f, 17, 1, generator=g).abs(), torch.tensor([999, 37][:b]))


def _count_fused_calls(monkeypatch) -> list[str]:
    """Record which fused kernels the blocks call (wrapping the real ones where imported)."""
    from ddhpose.model import denoiser, layers

    calls: list[str] = []
    for name in ("add_linear", "linear_gelu", "linear"):
        real = getattr(fused_mod, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)

        for mod in (layers, denoiser):
            monkeypatch.setattr(mod, name, spy)
    return calls


@pytest.mark.parametrize("backend", ["onednn", "addmm"])
def test_fused_path_matches_reference_denoiser(parity_dir, force_fused, monkeypatch, backend):
    if backend == "addmm":
        monkeypatch.setattr(fused_mod, "onednn_available", lambda: False)
    elif not fused_mod.onednn_available():
        pytest.skip("this torch build has no oneDNN fused linear")
    model = DDHPose(demo_model(width=64, depth=3, frames=27, drop_path=0.0))
    model.load_state_dict(torch.load(parity_dir / "state_dict.pt", weights_only=True))
    model.eval()
    case = torch.load(parity_dir / "denoiser_eval_layout.pt", weights_only=True)
    args = [case[k] for k in ("x_2d", "x_3d_dir", "x_3d_bone", "t")]
    out = _fused(model, *args)
    err = (out - case["out"]).abs().max().item()
    assert err <= TOL, f"fused ({backend}) denoiser differs from the reference by {err:.3g}"


def test_fused_path_matches_reference_sampler(parity_dir, force_fused):
    model = DDHPose(demo_model(width=64, depth=3, frames=27, drop_path=0.0))
    model.load_state_dict(torch.load(parity_dir / "state_dict.pt", weights_only=True))
    model.eval()
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    case = torch.load(parity_dir / "sample_H3_K4.pt", weights_only=True)
    pred = model.sample(inputs["inputs_2d"], hypotheses=3, steps=4, noise=list(case["noise"]),
                        x2d_flip=inputs["inputs_2d_flip"])
    err = (pred - case["pred"]).abs().max().item()
    assert err <= TOL, f"fused sampler differs from the reference by {err:.3g}"


def test_fused_path_is_taken_and_equals_plain_at_paper_width(monkeypatch):
    calls = _count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=512, depth=2, frames=9, drop_path=0.0)).eval()
    args = _inputs(2, 2, 9)
    plain = _plain(model, *args)
    assert calls == []  # grad mode: the plain modules
    fast = _fused(model, *args)
    # per block: qkv, proj+residual, fc1+gelu, fc2+residual; +qkv_xc in the hierarchical one
    assert calls.count("add_linear") == 2 * 4 and calls.count("linear_gelu") == 4
    assert calls.count("linear") == 4 + 1
    scale = plain.abs().max().item()
    assert (fast - plain).abs().max().item() <= 1e-5 * max(scale, 1.0)


def test_addmm_fallback_equals_plain(no_onednn):
    torch.manual_seed(1)
    model = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
    args = _inputs(1, 3, 9)
    plain, fast = _plain(model, *args), _fused(model, *args)
    assert (fast - plain).abs().max().item() <= 1e-5 * max(plain.abs().max().item(), 1.0)


def test_packed_weights_follow_weight_updates():
    """The oneDNN weight cache must not serve stale weights after an optimizer step,
    ``load_state_dict`` or a dtype change."""
    if not fused_mod.onednn_available():
        pytest.skip("this torch build has no oneDNN fused linear")
    torch.manual_seed(2)
    model = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
    args = _inputs(1, 1, 9)
    before = _fused(model, *args)
    lin = model.dir_bone_estimator.STEblocks_0[0].mlp.fc1
    assert lin in fused_mod._PACKED  # packed and cached
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    after = _fused(model, *args)
    assert (after - before).abs().max().item() > 1e-3  # the step is visible
    assert (after - _plain(model, *args)).abs().max().item() <= 1e-4
    other = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
    model.load_state_dict(other.state_dict())
    assert (_fused(model, *args) - _fused(other, *args)).abs().max().item() <= 1e-5


def test_bfloat16_fused_path_close_to_float32():
    torch.manual_seed(3)
    model = DDHPose(demo_model(width=512, depth=2, frames=9, drop_path=0.0)).eval()
    x2d, d, ln, t = _inputs(2, 2, 9)
    with torch.no_grad():
        y32 = model.denoise(x2d, d, ln, t)
        y16 = model.denoise(x2d, d, ln, t, dtype=torch.bfloat16)
    assert y16.dtype == torch.float32 and torch.isfinite(y16).all()
    dev = (y16 - y32).abs().max().item()
    assert 0.0 < dev <= 0.1 * max(y32.abs().max().item(), 1.0)


def test_inference_mode_models_and_bf16_copies():
    """A model built under ``torch.inference_mode`` (inference tensors: no version counter) and
    the cached bfloat16 copy made inside ``inference_mode`` both run the fused path."""
    args = _inputs(1, 2, 9)
    with torch.inference_mode():
        torch.manual_seed(4)
        model = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
        fast = model.denoise(*args)
        y16 = model.denoise(*args, dtype=torch.bfloat16)
    assert not model.lowp_denoiser(torch.bfloat16).Spatial_pos_embed.is_inference()
    normal = DDHPose(demo_model(width=256, depth=2, frames=9, drop_path=0.0)).eval()
    with torch.no_grad():
        for p, q in zip(normal.parameters(), model.parameters(), strict=True):
            p.copy_(q)
    assert (fast - _plain(normal, *args)).abs().max().item() <= 1e-5
    assert (y16 - fast).abs().max().item() < 0.1

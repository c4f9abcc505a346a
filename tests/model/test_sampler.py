"""DDIM sampler with flip TTA: parity with the reference on recorded noise, reproducibility,
shapes and the MPI-INF-3DHP variant."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_model

from ddhpose.model import DDHPose
from ddhpose.model.diffusion import RandomDraws, ddim_time_pairs
from ddhpose.model.sampler import ddim_sample
from ddhpose.skeleton import flip_joints

TOL = 1e-5


@pytest.fixture(scope="module")
def small(parity_dir):
    model = DDHPose(demo_model(width=64, depth=3, frames=27, drop_path=0.0))
    model.load_state_dict(torch.load(parity_dir / "state_dict.pt", weights_only=True))
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    return model.eval(), inputs


@pytest.mark.parametrize("name", ["sample_H1_K1.pt", "sample_H3_K4.pt"])
def test_sampler_matches_reference(small, parity_dir, name):
    model, inputs = small
    case = torch.load(parity_dir / name, weights_only=True)
    _, k, h = case["pred"].shape[:3]
    assert [tuple(p) for p in case["time_pairs"]] == ddim_time_pairs(1000, k)
    noise = list(case["noise"])
    kept = [n.clone() for n in noise]
    pred = model.sample(inputs["inputs_2d"], hypotheses=h, steps=k, noise=noise,
                        x2d_flip=inputs["inputs_2d_flip"])
    assert pred.shape == case["pred"].shape
    for step in range(k):
        err = (pred[:, step] - case["pred"][:, step]).abs().max().item()
        assert err <= TOL, f"{name}: step {step} differs by {err:.3g}"
    assert all(torch.equal(a, b) for a, b in zip(noise, kept, strict=True))  # replay untouched
    # the flipped input built from the skeleton equals the recorded one
    assert torch.equal(flip_joints(inputs["inputs_2d"], model.skeleton), inputs["inputs_2d_flip"])
    pred2 = model.sample(inputs["inputs_2d"], hypotheses=h, steps=k, noise=list(case["noise"]))
    assert (pred2 - case["pred"]).abs().max().item() <= TOL


def test_noise_callable_is_the_same_stream(small, parity_dir):
    model, inputs = small
    case = torch.load(parity_dir / "sample_H3_K4.pt", weights_only=True)
    stream = iter(case["noise"])
    shapes = []

    def noise(shape):
        shapes.append(tuple(shape))
        return next(stream)

    pred = model.sample(inputs["inputs_2d"], 3, 4, noise=noise)
    assert shapes == [tuple(n.shape) for n in case["noise"]]
    assert (pred - case["pred"]).abs().max().item() <= TOL


def test_generator_sampling_is_reproducible(small):
    model, inputs = small
    x2d = inputs["inputs_2d"][:1]
    run = [model.sample(x2d, 2, 2, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert run[0].shape == (1, 2, 2, 27, 17, 3)
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], run[2])
    assert run[0].abs().max().item() <= 1.1 + 1e-6  # predictions clamped to ±1.1 m


def test_sample_runs_in_eval_mode_and_restores_mode():
    torch.manual_seed(0)
    model = DDHPose(demo_model(width=16, depth=3, frames=9, drop_path=0.5))
    x2d = torch.rand(1, 9, 17, 2)
    model.train()
    a = model.sample(x2d, 1, 2, generator=torch.Generator().manual_seed(1))
    assert model.training
    model.eval()
    b = model.sample(x2d, 1, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # no drop-path during sampling


def _tiny(dataset: str) -> DDHPose:
    torch.manual_seed(0)
    return DDHPose(demo_model(dataset=dataset, width=16, depth=2, frames=9)).eval()


def test_3dhp_sampler_smoke_and_units():
    model = _tiny("3dhp")
    x2d = torch.rand(2, 9, 17, 2) * 2 - 1
    pred = model.sample(x2d, hypotheses=2, steps=3, generator=torch.Generator().manual_seed(0))
    assert pred.shape == (2, 3, 2, 9, 17, 3)
    assert torch.isfinite(pred).all()
    assert pred.abs().max().item() <= 1100.0 + 1e-3  # millimetres, clamp 1.1 m
    assert pred.abs().max().item() > 1.1  # really scaled to mm


@pytest.mark.parametrize(("dataset", "same"), [("h36m", True), ("3dhp", False)])
def test_reference_implied_noise_slots(dataset, same):
    """Slots 1..16 are the bone slots for H36M; for 3DHP the reference bug differs
    (docs/model.md "Quirks: 3DHP slot mismatch")."""
    model = _tiny(dataset)
    x2d = torch.rand(1, 9, 17, 2) * 2 - 1
    flip = flip_joints(x2d, model.skeleton)
    out = []
    for slots in ("reference", None):
        kwargs = {} if slots == "reference" else {"implied_noise_slots": None}
        with torch.no_grad():
            out.append(ddim_sample(model.denoise, x2d, flip, model.schedule, model.skeleton,
                                   hypotheses=1, steps=2,
                                   draws=RandomDraws(generator=torch.Generator().manual_seed(2)),
                                   **kwargs))
    assert torch.equal(out[0][:, 0], out[1][:, 0])  # the first step does not use the noise
    assert torch.equal(out[0], out[1]) is same


def test_cuda_chunks_keep_a_paper_size_call_under_the_memory_budget():
    from ddhpose.model.ddhpose import cuda_clips_per_call

    paper = {"frames": 243, "joints": 17, "width": 512, "mlp_ratio": 2.0}
    gb = 2**30
    # one paper-setting sampling call (B=4, flip, H=20: 160 clip passes) does not fit 16 GB in
    # float32: it is split; 80 GB holds it whole; bfloat16 halves the per-clip size
    on_16 = cuda_clips_per_call(0.6 * 15 * gb, elem_bytes=4, **paper)
    assert 1 <= on_16 < 160
    assert cuda_clips_per_call(0.6 * 79 * gb, elem_bytes=4, **paper) >= 160
    assert cuda_clips_per_call(0.6 * 15 * gb, elem_bytes=2, **paper) in (2 * on_16, 2 * on_16 + 1)
    assert cuda_clips_per_call(0, elem_bytes=4, **paper) == 1

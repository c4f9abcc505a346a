"""Cosine schedule, DDIM time pairs, training-time noising and the random-draw source."""

from __future__ import annotations

import math

import pytest
import torch

from ddhpose.model.diffusion import (
    SCHEDULE_BUFFERS,
    RandomDraws,
    cosine_schedule,
    ddim_time_pairs,
    noise_bone_slots,
    q_sample,
)


@pytest.fixture(scope="module")
def sched():
    return cosine_schedule(1000)


def test_schedule_check_values(sched):
    abar, betas = sched["alphas_cumprod"], sched["betas"]
    assert all(v.dtype == torch.float64 and v.shape == (1000,) for v in sched.values())
    assert list(sched) == list(SCHEDULE_BUFFERS)
    expected = {
        0: 0.9999587158, 99: 0.9720927371, 499: 0.4938435904, 899: 0.02409172414,
        998: 2.428766907e-6, 999: 2.428766907e-9,
    }
    for t, v in expected.items():
        assert abar[t].item() == pytest.approx(v, rel=1e-9)
    assert betas[0].item() == pytest.approx(4.128422482e-5, rel=1e-9)
    assert betas[999].item() == 0.999
    assert int((betas >= 0.999).sum()) == 1  # the only clipped value
    assert sched["alphas_cumprod_prev"][0].item() == 1.0
    assert torch.equal(sched["alphas_cumprod_prev"][1:], abar[:-1])
    assert sched["posterior_log_variance_clipped"][0].item() == pytest.approx(math.log(1e-20))


def test_schedule_equals_reference_buffers(sched, parity_dir):
    ref = torch.load(parity_dir / "state_dict.pt", weights_only=True)
    for name in SCHEDULE_BUFFERS:
        assert ref[name].dtype == torch.float64
        assert (sched[name] - ref[name]).abs().max().item() <= 1e-12, name


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (1, [(999, -1)]),
        (2, [(999, 499), (499, -1)]),
        (4, [(999, 749), (749, 499), (499, 249), (249, -1)]),
        (5, [(999, 799), (799, 599), (599, 399), (399, 199), (199, -1)]),
        (10, [(999 - 100 * i, 899 - 100 * i) for i in range(9)] + [(99, -1)]),
        (20, [(999 - 50 * i, 949 - 50 * i) for i in range(19)] + [(49, -1)]),
    ],
)
def test_ddim_time_pairs(steps, expected):
    assert ddim_time_pairs(1000, steps) == expected


def test_ddim_coefficients_k10(sched):
    """(sqrt ᾱ_next, σ, c) for K = 10, eta = 1 (measured on the reference; docs/model.md
    "The DDIM update")."""
    table = [
        (0.15521509, 0.98788065, 0.00030986), (0.30666857, 0.83096996, 0.46415871),
        (0.45069000, 0.68727303, 0.56967913), (0.58378904, 0.57809836, 0.57008127),
        (0.70274006, 0.48779364, 0.51789360), (0.80466031, 0.40652062, 0.43273869),
        (0.88707977, 0.32727065, 0.32555094), (0.94800101, 0.24317236, 0.20533213),
        (0.98594763, 0.14421876, 0.08431021),
    ]
    abar = sched["alphas_cumprod"]
    for (t, t_next), (sq, sig, c) in zip(ddim_time_pairs(1000, 10)[:-1], table, strict=True):
        a, an = abar[t], abar[t_next]
        sigma = ((1 - a / an) * (1 - an) / (1 - a)).sqrt()
        assert an.sqrt().item() == pytest.approx(sq, abs=1e-7)
        assert sigma.item() == pytest.approx(sig, abs=1e-7)
        assert (1 - an - sigma**2).sqrt().item() == pytest.approx(c, abs=1e-7)


def test_q_sample_formula_and_clamp(sched):
    x0 = torch.tensor([[0.5, -0.3, 1.0]])
    eps = torch.tensor([[0.1, -2.0, 30.0]])
    t = torch.tensor([400])
    out = q_sample(x0, t, eps, sched)
    a = math.sqrt(sched["alphas_cumprod"][400].item())
    s = math.sqrt(1 - sched["alphas_cumprod"][400].item())
    pairs = zip(x0[0].tolist(), eps[0].tolist(), strict=True)
    want = [max(-1.1, min(1.1, a * x + s * e)) for x, e in pairs]
    assert out.dtype == torch.float32
    assert out[0].tolist() == pytest.approx(want, abs=1e-7)
    assert out[0, 2].item() == pytest.approx(1.1)


def test_noising_draw_order_matches_global_rng(sched):
    """Per clip: randint t, randn directions (F,J,3), randn lengths (F,J,1) — global RNG."""
    b, f = 3, 4
    dirs = torch.nn.functional.normalize(torch.randn(b, f, 17, 3), dim=-1)
    dirs[:, :, 0] = 0
    lens = torch.rand(b, f, 17, 1)
    lens[:, :, 0] = 0
    torch.manual_seed(7)
    t, d, ln = noise_bone_slots(dirs, lens, sched, RandomDraws(), 1000)
    torch.manual_seed(7)
    expect = []
    for i in range(b):
        ti = torch.randint(0, 1000, (1,))
        ed, el = torch.randn(f, 17, 3), torch.randn(f, 17, 1)
        expect.append((ti, ed, el))
        assert t[i] == ti[0]
        torch.testing.assert_close(d[i], q_sample(dirs[i:i + 1], ti, ed[None], sched)[0])
        torch.testing.assert_close(ln[i], q_sample(lens[i:i + 1], ti, el[None], sched)[0])
    # the root slot (clean value 0) carries sqrt(1 - ᾱ_t)·ε only
    i = 1
    s = sched["sqrt_one_minus_alphas_cumprod"][t[i]].item()
    torch.testing.assert_close(d[i, :, 0], (s * expect[i][1][:, 0]).clamp(-1.1, 1.1))
    # replaying the recorded draws reproduces the result exactly
    replay = [x for triple in expect for x in triple]
    t2, d2, l2 = noise_bone_slots(dirs, lens, sched, RandomDraws(replay), 1000)
    assert torch.equal(t2, t) and torch.equal(d2, d) and torch.equal(l2, ln)


def test_random_draws_sources():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = RandomDraws(generator=g1).randn((2, 3)), RandomDraws(generator=g2).randn((2, 3))
    assert torch.equal(a, b)
    calls = []
    src = RandomDraws(lambda shape: calls.append(shape) or torch.zeros(shape))
    assert torch.equal(src.randn((4, 1)), torch.zeros(4, 1)) and calls == [(4, 1)]
    replay = RandomDraws([torch.zeros(2, 2)])
    with pytest.raises(ValueError, match="expected"):
        replay.randn((3, 2))
    with pytest.raises(ValueError, match="ran out"):
        RandomDraws([]).randn((1,))

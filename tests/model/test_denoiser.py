"""HSTDenoiser: parity with the reference MixSTE2 (small fixture), layouts, HRST edit, 3DHP."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_model, paper_model

from ddhpose.model import DDHPose
from ddhpose.model.denoiser import HierarchicalAttention, HSTDenoiser, chain_triples
from ddhpose.skeleton import H36M17, MPI3DHP17

TOL = 1e-5
SMALL = {"width": 64, "depth": 3, "frames": 27}


@pytest.fixture(scope="module")
def ref_state(parity_dir):
    return torch.load(parity_dir / "state_dict.pt", weights_only=True)


@pytest.fixture(scope="module")
def eval_case(parity_dir):
    return torch.load(parity_dir / "denoiser_eval_layout.pt", weights_only=True)


def _small_model(ref_state, **overrides) -> DDHPose:
    model = DDHPose(demo_model(**{**SMALL, "drop_path": 0.0, **overrides}))
    model.load_state_dict(ref_state, strict=True)
    return model.eval()


def _run_with_hooks(net: HSTDenoiser, names, *args) -> tuple[torch.Tensor, dict]:
    """Call the denoiser, recording the output of each named submodule per call."""
    rec: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, mod in net.named_modules():
        if name in names:
            handles.append(mod.register_forward_hook(
                lambda _m, _i, out, name=name: rec.setdefault(name, []).append(out.detach())))
    try:
        with torch.no_grad():
            out = net(*args)
    finally:
        for h in handles:
            h.remove()
    return out, rec


def test_state_dict_names_and_shapes_equal_reference(ref_state):
    ours = DDHPose(demo_model(**SMALL)).state_dict()
    assert list(ours) == list(ref_state)
    for k, v in ref_state.items():
        assert ours[k].shape == v.shape and ours[k].dtype == v.dtype, k


def test_paper_config_model_size():
    """configs/paper_h36m_cpn.yaml on params.yaml builds the paper's 38.5 M-parameter model."""
    with torch.device("meta"):
        model = DDHPose(paper_model())
    sd = model.state_dict()
    assert len(sd) == 249
    assert sum(p.numel() for p in model.parameters()) == 38_516_227
    assert sum(1 for _ in model.parameters()) == 237


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
def test_eval_layout_parity_per_submodule(ref_state, eval_case, fused):
    net = _small_model(ref_state).dir_bone_estimator
    for mod in net.modules():
        if hasattr(mod, "fused"):
            mod.fused = fused
    inter = eval_case["intermediates"]
    out, rec = _run_with_hooks(
        net, set(inter), eval_case["x_2d"], eval_case["x_3d_dir"], eval_case["x_3d_bone"],
        eval_case["t"],
    )
    # walk in execution order so the first diverging submodule is named
    for name, expected in inter.items():
        got = rec.get(name, [])
        assert len(got) == len(expected), f"{name}: {len(got)} calls, reference {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a.shape == b.shape, f"{name}[{i}] shape {tuple(a.shape)} vs {tuple(b.shape)}"
            err = (a - b).abs().max().item()
            assert err <= TOL, f"{name}[{i}] differs from the reference by {err:.3g}"
    assert out.shape == eval_case["out"].shape
    assert (out - eval_case["out"]).abs().max().item() <= TOL


def test_train_layout_parity(ref_state, parity_dir):
    case = torch.load(parity_dir / "denoiser_train_layout.pt", weights_only=True)
    model = _small_model(ref_state)
    with torch.no_grad():
        out = model.denoise(case["x_2d"], case["x_3d_dir"], case["x_3d_bone"], case["t"])
    assert out.shape == case["out"].shape == (2, 27, 17, 3)
    assert (out - case["out"]).abs().max().item() <= TOL


def test_train_layout_is_eval_layout_with_one_hypothesis(ref_state, eval_case):
    model = _small_model(ref_state)
    d, ln = eval_case["x_3d_dir"][:, :1], eval_case["x_3d_bone"][:, :1]
    with torch.no_grad():
        five = model.denoise(eval_case["x_2d"], d, ln, eval_case["t"])
        four = model.denoise(eval_case["x_2d"], d[:, 0], ln[:, 0], eval_case["t"])
    assert torch.equal(five[:, 0], four)


def test_transpose_layout_loads_reference_weights_but_differs(ref_state, eval_case):
    net = _small_model(ref_state, xc_layout="transpose").dir_bone_estimator
    inter = eval_case["intermediates"]
    args = (eval_case["x_2d"], eval_case["x_3d_dir"], eval_case["x_3d_bone"], eval_case["t"])
    out, rec = _run_with_hooks(net, set(inter), *args)
    # xc only enters at the first hierarchical temporal block
    for name in ("STEblocks_0.0", "TTEblocks_0.0", "STEblocks.0"):
        assert (rec[name][0] - inter[name][0]).abs().max().item() <= TOL
    assert (rec["TTEblocks.0"][0] - inter["TTEblocks.0"][0]).abs().max().item() > 1e-3
    assert (out - eval_case["out"]).abs().max().item() > 1e-3


@pytest.mark.parametrize("layout", ["reference", "transpose"])
def test_child_feature_layout(layout):
    """Row b·J+j, key s: reference = flat reshape of (B',F,J,C); transpose = frame s, joint j."""
    frames, joints, width, clips = 5, 17, 8, 2
    net = HSTDenoiser(H36M17, num_frames=frames, width=width, depth=2, xc_layout=layout)
    x = torch.randn(clips * joints, frames, width)  # temporal rows (B'·J, F, C)
    xs = x.view(clips, joints, frames, width)
    got = net.child_features(x, clips)
    assert got.shape == (clips * joints, frames, width)
    for b in range(clips):
        for j in range(joints):
            for s in range(frames):
                if layout == "reference":
                    f_src, j_src = divmod(j * frames + s, joints)
                else:
                    f_src, j_src = s, j
                group = H36M17.child_mean_groups[j_src]
                want = torch.stack([xs[b, g, f_src] for g in group]).mean(0)
                torch.testing.assert_close(got[b * joints + j, s], want, atol=1e-6, rtol=0)


def test_hrst_edit_is_sequential_and_in_place():
    attn = HierarchicalAttention(16, 2, True, True, True, chain_triples(H36M17))
    a = torch.randn(3, 2, 17, 17)
    e = attn.edit_scores(a.clone())
    # spine: A[7,8] is averaged with A[0,7] once per chain through the thorax (3 times)
    torch.testing.assert_close(e[..., 7, 8], a[..., 0, 7] + (a[..., 7, 8] - a[..., 0, 7]) / 8)
    torch.testing.assert_close(e[..., 8, 7], a[..., 0, 7] + (a[..., 8, 7] - a[..., 0, 7]) / 8)
    # the first update of A[8,9] reads the already-updated A[7,8]
    a78 = (a[..., 7, 8] + a[..., 0, 7]) / 2
    torch.testing.assert_close(e[..., 8, 9], (a[..., 8, 9] + a78) / 2)
    torch.testing.assert_close(e[..., 1, 2], (a[..., 1, 2] + a[..., 0, 1]) / 2)
    assert torch.equal(e[..., 0, :], a[..., 0, :])  # root row untouched
    assert torch.equal(e[..., 3, 10], a[..., 3, 10])  # off-chain entries untouched


def test_3dhp_model_uses_3dhp_tables_and_shapes():
    cfg = demo_model(dataset="3dhp", width=16, depth=2, frames=9, heads=8)
    model = DDHPose(cfg).eval()
    net = model.dir_bone_estimator
    assert net.skeleton is MPI3DHP17
    assert net.level_index[14].item() == 0 and net.level_index[4].item() == 5
    assert net.STEblocks[0].attn.chain_triples[0] == (14, 8, 9)
    assert torch.allclose(net.child_mean[1, [0, 2, 5, 16, 1]], torch.full((5,), 0.2))
    assert net.child_mean[1].sum().item() == pytest.approx(1.0)
    b, h = 2, 3
    with torch.no_grad():
        out = model.denoise(torch.randn(b, 9, 17, 2), torch.randn(b, h, 9, 17, 3),
                            torch.randn(b, h, 9, 17, 1), torch.tensor([5, 900]))
    assert out.shape == (b, h, 9, 17, 3) and torch.isfinite(out).all()
    assert model.unit_scale == 1000.0


def test_bad_shapes_and_layout_are_refused():
    model = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()
    with pytest.raises(ValueError, match="frames"):
        model.denoise(torch.randn(1, 8, 17, 2), torch.randn(1, 1, 8, 17, 3),
                      torch.randn(1, 1, 8, 17, 1), torch.tensor([1]))
    with pytest.raises(ValueError, match="bone_len"):
        model.denoise(torch.randn(1, 9, 17, 2), torch.randn(1, 1, 9, 17, 3),
                      torch.randn(1, 1, 9, 17, 3), torch.tensor([1]))
    from ddhpose.errors import ConfigError

    with pytest.raises(ConfigError, match="xc_layout"):
        demo_model(xc_layout="sideways").validate()


def test_seventeen_frames_do_not_trigger_the_spatial_edit():
    """Spatial vs temporal is an explicit flag, not ``N == 17`` (docs/model.md
    "Done differently")."""
    torch.manual_seed(0)
    net = HSTDenoiser(H36M17, num_frames=17, width=16, depth=2).eval()
    calls = []
    for blocks in (net.STEblocks, net.TTEblocks):
        attn = blocks[0].attn
        original = attn.edit_scores
        attn.edit_scores = lambda s, o=original, sp=attn.spatial: calls.append(sp) or o(s)
    with torch.no_grad():
        net(torch.randn(1, 17, 17, 2), torch.randn(1, 1, 17, 17, 3), torch.randn(1, 1, 17, 17, 1),
            torch.tensor([3]))
    assert calls == [True]


def test_drop_path_is_per_sample_and_only_in_training():
    from ddhpose.model.layers import DropPath

    dp = DropPath(0.5)
    x = torch.ones(4000, 2, 3)
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y[:, 0, 0]
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(y, per_sample[:, None, None].expand_as(y))
    assert abs(per_sample.mean().item() - 1.0) < 0.1
    dp.eval()
    assert torch.equal(dp(x), x)


@pytest.mark.parametrize("skel", [H36M17, MPI3DHP17], ids=["h36m", "3dhp"])
def test_precomposed_hrst_edit_equals_the_loop(skel):
    """The one-operation edit gives the sequential loop's values and gradients (round-off)."""
    from ddhpose.model.denoiser import chain_edit_operator

    triples = chain_triples(skel)
    attn = HierarchicalAttention(16, 2, True, True, True, triples, skel.num_joints)
    changed, source, weight = chain_edit_operator(triples, skel.num_joints)
    assert 0 < len(changed) <= 2 * len(triples) and len(weight) == len(source)
    g = torch.Generator().manual_seed(1)
    scores = (torch.randn(7, 3, 17, 17, generator=g) * 5).requires_grad_(True)
    upstream = torch.randn(7, 3, 17, 17, generator=g)
    before = scores.detach().clone()
    fast = attn.edit_scores(scores)
    assert torch.equal(scores.detach(), before)  # not in place
    (gf,) = torch.autograd.grad((fast * upstream).sum(), scores)
    slow = attn.edit_scores_loop(scores.clone())
    (gs,) = torch.autograd.grad((slow * upstream).sum(), scores)
    assert not torch.equal(slow, scores)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)
    torch.testing.assert_close(gf, gs, rtol=0, atol=1e-5)
    untouched = torch.ones(17 * 17, dtype=torch.bool)
    untouched[changed] = False
    kept = fast.detach().flatten(-2)[..., untouched]
    assert torch.equal(kept, before.flatten(-2)[..., untouched])
    attn.precomposed_edit = False  # the loop switch of the ablation
    torch.testing.assert_close(attn.edit_scores(before.clone()), slow.detach(), rtol=0, atol=0)

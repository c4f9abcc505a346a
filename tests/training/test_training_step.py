"""One training step against the reference (train_step.pt): noising draws and drop-path masks
replayed, losses, loss-scaled gradient, AdamW(lr 1e-4, wd 0.1) update."""

from __future__ import annotations

import pytest
import torch
from demo_config import demo_model

from ddhpose.model import DDHPose, linear_grad
from ddhpose.model.fused import onednn_available
from ddhpose.model.layers import set_drop_path_mask_fn
from ddhpose.model.losses import backward_loss, pose_losses
from ddhpose.skeleton import H36M17

TOL = 1e-5
LR = 1e-4


@pytest.fixture(scope="module", params=["nn_linear", "onednn_linear"])
def step(request, parity_dir):
    """Replay the reference's training step once; return (model, result dict, fixture).

    Run twice: with the demo width's own path (``nn.Linear``, narrower than
    ``linear_grad.MIN_WIDTH``) and with every block linear through
    :class:`~ddhpose.model.linear_grad.OneDNNLinear` (the paper width's path)."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "onednn_linear":
            if not onednn_available():
                pytest.skip("this torch build has no oneDNN linear op")
            mp.setattr(linear_grad, "MIN_WIDTH", 1)
        return _replay_step(parity_dir, request.param)


def _replay_step(parity_dir, path):
    ref = torch.load(parity_dir / "train_step.pt", weights_only=True)
    state = torch.load(parity_dir / "state_dict.pt", weights_only=True)
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    model = DDHPose(demo_model(width=64, depth=3, frames=27, drop_path=0.1))
    model.load_state_dict(state, strict=True)
    model.train()
    kinds = ref["draw_kinds"]
    n_noise = sum(k != "droppath_mask" for k in kinds)
    masks = iter(ref["draws"][n_noise:])
    used: list[tuple] = []

    def mask_fn(shape, keep, _x):
        used.append((shape, keep))
        return next(masks)

    assert set_drop_path_mask_fn(model, mask_fn) == 6  # 2 plain (rate 0) + 4 hierarchical
    pred = model(inputs["inputs_2d"], inputs["inputs_3d"], noise=list(ref["draws"][:n_noise]))
    losses = pose_losses(pred, inputs["inputs_3d"], model.skeleton)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    opt.zero_grad()
    backward_loss(losses["total"])
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    set_drop_path_mask_fn(model, None)
    result = {"pred": pred.detach(), "losses": losses, "grads": grads, "masks_used": used,
              "state": model.state_dict(), "before": state, "path": path,
              "onednn_nodes": _onednn_nodes(pred)}
    return model, result, ref


def _onednn_nodes(out: torch.Tensor) -> int:
    """How many OneDNNLinear nodes the autograd graph of ``out`` holds."""
    seen, todo, count = set(), [out.grad_fn], 0
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        count += type(fn).__name__ == "OneDNNLinearBackward"
        todo.extend(f for f, _ in fn.next_functions)
    return count


def test_the_intended_linear_path_ran(step):
    _, res, _ = step
    # 6 blocks x (qkv, proj, fc1, fc2) + qkv_xc of the 2 hierarchical temporal blocks
    assert res["onednn_nodes"] == (26 if res["path"] == "onednn_linear" else 0)


def test_forward_with_replayed_draws_matches(step):
    _, res, ref = step
    assert (res["pred"] - ref["pred"]).abs().max().item() <= TOL
    # masks: spatial (B·F = 54) then temporal (B·J = 34) per hierarchical layer, keep 0.95, 0.9
    shapes = [s for s, _ in res["masks_used"]]
    assert shapes == [(54, 1, 1), (54, 1, 1), (34, 1, 1), (34, 1, 1)] * 2
    assert [round(k, 6) for _, k in res["masks_used"]] == [0.95] * 4 + [0.9] * 4


def test_losses_match(step):
    _, res, ref = step
    for ours, theirs in (("pos", "loss_pos"), ("length", "loss_length"), ("dir", "loss_dir"),
                         ("total", "loss_total")):
        assert abs(res["losses"][ours].item() - ref[theirs].item()) <= TOL, ours


def test_loss_scaled_gradient_norm_matches(step):
    _, res, ref = step
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in res["grads"].values())).item()
    assert norm == pytest.approx(float(ref["grad_global_norm"]), rel=1e-6)
    # the spatial blocks' qkv_xc are dead (no gradient, so AdamW leaves them alone:
    # docs/model.md "Quirks: unused spatial qkv_xc")
    dead = {n for n, p in step[0].named_parameters() if n not in res["grads"]}
    assert dead == {f"dir_bone_estimator.STEblocks.{i}.attn.qkv_xc.{w}"
                    for i in (0, 1) for w in ("weight", "bias")}


def test_state_after_adamw_step_matches(step):
    """Elements with a real gradient match to 1e-5. The first AdamW step moves every element by
    ≈ lr·g/(|g| + 1e-8), so elements whose gradient is round-off noise (|g| < 1e-7, e.g. the key
    biases, to which softmax is invariant) move by an arbitrary amount in [−lr, lr] in any two
    implementations; those are only checked against that bound."""
    _, res, ref = step
    after_ref = ref["state_dict_after_step"]
    assert list(after_ref) == list(res["state"])
    noisy = total = 0
    for name, want in after_ref.items():
        got = res["state"][name]
        g = res["grads"].get(name)
        if g is None:
            assert torch.equal(got, res["before"][name]), f"{name} changed without a gradient"
            assert torch.equal(want, res["before"][name]), name
            continue
        determined = g.abs() > 1e-7
        diff = (got - want).abs()
        if determined.any():
            assert diff[determined].max().item() <= TOL, name
        assert diff.max().item() <= 2 * LR * 1.01, name
        noisy += int((~determined).sum())
        total += g.numel()
    assert noisy < 0.01 * total


def test_backward_loss_scales_by_the_loss():
    w = torch.tensor([1.5, -2.0], requires_grad=True)
    total = (w**2).sum()
    backward_loss(total, loss_scaled_grad=True)
    torch.testing.assert_close(w.grad, 2 * w.detach() * total.detach())
    w.grad = None
    backward_loss((w**2).sum(), loss_scaled_grad=False)
    torch.testing.assert_close(w.grad, 2 * w.detach())


def test_pose_losses_definition():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 17, 3)
    target[:, :, 0] = 0
    pred = target + 0.1 * torch.randn_like(target)
    out = pose_losses(pred, target, H36M17, w_len=2.0, w_dir=0.5)
    assert out["pos"].item() == pytest.approx((pred - target).norm(dim=-1).mean().item(), rel=1e-6)
    assert pose_losses(target, target, H36M17)["total"].item() == 0.0
    # length term: lengths averaged over frames first, per clip and bone
    v = lambda x: x[..., [c for _, c in H36M17.bones], :] - x[..., [p for p, _ in H36M17.bones], :]  # noqa: E731
    lt, lp = v(target).norm(dim=-1).mean(1), v(pred).norm(dim=-1).mean(1)
    assert out["length"].item() == pytest.approx(2.0 * ((lt - lp) ** 2).mean().item(), rel=1e-5)
    assert out["total"].item() == pytest.approx(
        (out["pos"] + out["length"] + out["dir"]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="pred and target"):
        pose_losses(pred[..., :2], target, H36M17)


def test_3dhp_forward_takes_and_returns_millimetres():
    torch.manual_seed(0)
    model = DDHPose(demo_model(dataset="3dhp", width=16, depth=2, frames=9)).eval()
    x2d = torch.rand(2, 9, 17, 2)
    x3d_m = torch.randn(2, 9, 17, 3) * 0.3
    x3d_m[:, :, 14] = 0  # root 14
    draws = []
    for _ in range(2):
        draws += [torch.randint(0, 1000, (1,)), torch.randn(9, 17, 3), torch.randn(9, 17, 1)]
    out_mm = model(x2d, x3d_m * 1000.0, noise=list(draws))
    model3 = DDHPose(demo_model(width=16, depth=2, frames=9)).eval()  # same maths, metres
    model3.dir_bone_estimator = model.dir_bone_estimator
    model3.skeleton = model.skeleton
    out_m = model3(x2d, x3d_m, noise=list(draws))
    torch.testing.assert_close(out_mm, out_m * 1000.0, rtol=1e-5, atol=1e-3)

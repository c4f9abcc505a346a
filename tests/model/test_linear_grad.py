"""OneDNNLinear: the float32 training path of the block linears on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddhpose.model import linear_grad
from ddhpose.model.fused import onednn_available
from ddhpose.model.linear_grad import OneDNNLinear, linear_train, uses_onednn_grad

pytestmark = pytest.mark.skipif(not onednn_available(),
                                reason="this torch build has no oneDNN linear op")


def _grads(lin: nn.Linear, x: torch.Tensor, fn) -> tuple[torch.Tensor, ...]:
    lin.zero_grad()
    x = x.detach().requires_grad_(True)
    y = fn(x)
    g = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    (y * g).sum().backward()
    return (y.detach(), x.grad, lin.weight.grad) + (
        (lin.bias.grad,) if lin.bias is not None else ())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [7, 2 * linear_grad.GRAD_ROWS + 5])  # one block and several
def test_matches_nn_linear_forward_and_gradients(bias, rows):
    torch.manual_seed(0)
    lin = nn.Linear(128, 192, bias=bias)
    x = torch.randn(2, rows, 128)
    assert uses_onednn_grad(x, lin)
    ours = _grads(lin, x, lambda a: linear_train(a, lin))
    plain = _grads(lin, x, lin)  # nn.Linear in float32
    # reference: the same layer in float64; ours may be off by float32 round-off like nn.Linear
    lin64 = nn.Linear(128, 192, bias=bias).double()
    lin64.load_state_dict(lin.state_dict())
    ref = _grads(lin64, x.double(), lin64)
    assert len(ours) == len(ref) == len(plain)
    for a, p, b in zip(ours, plain, ref, strict=True):
        assert a.dtype == torch.float32 and a.shape == b.shape
        err_plain = (p.double() - b).abs().max().item()
        assert (a.double() - b).abs().max().item() <= max(4 * err_plain, 1e-6 * b.abs().max())


def test_non_contiguous_input():
    torch.manual_seed(1)
    lin = nn.Linear(128, 128)
    x = torch.randn(128, 9, 4).transpose(0, 2)  # (4, 9, 128), not contiguous
    ours = _grads(lin, x, lambda a: linear_train(a, lin))
    plain = _grads(lin, x, lin)
    for a, b in zip(ours, plain, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_taken_only_where_it_applies():
    lin, narrow = nn.Linear(128, 128), nn.Linear(64, 64)
    x = torch.randn(3, 128)
    assert uses_onednn_grad(x, lin)
    assert not uses_onednn_grad(torch.randn(3, 64), narrow)  # narrower than MIN_WIDTH
    with torch.no_grad():
        assert not uses_onednn_grad(x, lin)  # inference has its own fused kernels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_onednn_grad(x, lin)  # autocast GEMMs already run through oneDNN
    assert not uses_onednn_grad(x.double(), nn.Linear(128, 128).double())
    OneDNNLinear.enabled = False
    try:
        assert not uses_onednn_grad(x, nn.Linear(128, 128))
    finally:
        OneDNNLinear.enabled = True
    y = linear_train(x.requires_grad_(True), lin)
    assert type(y.grad_fn).__name__ == "ViewBackward0"
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "OneDNNLinearBackward"

"""The blocks' linear layers in float32 training on the CPU: oneDNN GEMMs with a hand-written
backward.

``nn.Linear`` on the CPU runs its three GEMMs (forward ``x·Wᵀ``, input gradient ``dY·W``, weight
gradient ``dYᵀ·x``) through the BLAS that torch was built with (MKL on x86). On AVX-512 CPUs
oneDNN's float32 kernels can be much faster for the forward and the input gradient at the
paper's shapes (16 524 tokens × 512 → 1536; the measured GFLOP/s, with their machine, date and
commit, are in ``docs/performance.md`` and ``reports/bench_ablation_training.md``),
but oneDNN's fused linear (``torch.ops.mkldnn._linear_pointwise``) has no autograd formula.
:class:`OneDNNLinear` supplies it:

* forward: ``y = x·Wᵀ + b`` by oneDNN;
* backward: ``dx = dY·W`` by oneDNN (as a linear layer whose weight is ``Wᵀ``); ``dW = dYᵀ·x``
  by oneDNN over blocks of :data:`GRAD_ROWS` token rows, summed (each block's transposed
  operands are small copies that stay in cache and run faster than one GEMM over all 16 524 rows;
  see ``docs/performance.md``); ``db = Σ_rows dY``.

Same maths as ``nn.Linear``: results differ by float32 round-off only (the GEMMs accumulate in
a different order), which the training-step parity tests bound. Used only where it pays and
only in IEEE float32: grad mode on, CPU tensors, float32 weights and inputs, no autocast (under
autocast torch's own bfloat16/float16 GEMMs already run through oneDNN), width at least
:data:`MIN_WIDTH`. Everywhere else :func:`linear_train` is plain ``lin(x)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ddhpose.model.fused import onednn_available

#: Narrower layers keep ``nn.Linear``: their GEMMs are too small for oneDNN to pay.
MIN_WIDTH = 128
#: Token rows per block of the weight-gradient GEMM.
GRAD_ROWS = 1024


def _onednn_linear(x2: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """(N, in) · (out, in)ᵀ (+ bias) -> (N, out) by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x2, weight, bias, "none", [], "")


def _weight_grad(grad: Tensor, x2: Tensor) -> Tensor:
    """dW = gradᵀ · x2: (N, out), (N, in) -> (out, in), summed over blocks of GRAD_ROWS rows."""
    out: Tensor | None = None
    for start in range(0, grad.shape[0], GRAD_ROWS):
        g = grad[start:start + GRAD_ROWS].t().contiguous()
        x = x2[start:start + GRAD_ROWS].t().contiguous()
        part = _onednn_linear(g, x, None)
        out = part if out is None else out.add_(part)
    assert out is not None
    return out


class OneDNNLinear(torch.autograd.Function):
    """``x2 (N, in) · weight (out, in)ᵀ + bias (out,)`` -> (N, out), forward and input gradient
    and weight gradient by oneDNN."""

    #: ``False`` switches it off everywhere (the ablation's earlier variants).
    enabled: bool = True

    @staticmethod
    def forward(ctx: Any, x2: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x2, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x2, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _onednn_linear(grad, weight.t().contiguous(), None)
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(grad, x2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(0)
        return gx, gw, gb


def uses_onednn_grad(x: Tensor, lin: nn.Linear) -> bool:
    """Whether :func:`linear_train` takes :class:`OneDNNLinear` for ``lin(x)``."""
    if not (OneDNNLinear.enabled and torch.is_grad_enabled()):
        return False
    w = lin.weight
    if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32:
        return False
    if min(w.shape) < MIN_WIDTH or torch.is_autocast_enabled("cpu"):
        return False
    return onednn_available()


def linear_train(x: Tensor, lin: nn.Linear) -> Tensor:
    """``lin(x)`` for x (..., in) -> (..., out): by :class:`OneDNNLinear` where it pays (see the
    module docstring), else by ``lin`` itself."""
    if not uses_onednn_grad(x, lin):
        return lin(x)
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    out = OneDNNLinear.apply(x2, lin.weight, lin.bias)
    return out.view(*x.shape[:-1], out.shape[-1])


__all__ = ["MIN_WIDTH", "OneDNNLinear", "linear_train", "uses_onednn_grad"]

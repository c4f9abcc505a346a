"""Fused inference kernels of the transformer blocks (no autograd; float32 CPU training has its
own oneDNN path with a backward, :mod:`ddhpose.model.linear_grad`).

A block's linear layers are run as ``x + lin(a)`` (residual folded into the GEMM) and
``gelu(fc1(a))`` (activation folded into the GEMM):

* on the CPU, through oneDNN's fused linear (``torch.ops.mkldnn._linear_pointwise``, the kernel
  ``torch.compile`` uses for CPU inference). On AVX-512 machines it runs 10–20 % faster than the
  MKL ``addmm`` behind ``nn.Linear`` and saves the separate GELU / residual passes;
* elsewhere (CUDA, or a torch build without oneDNN) through one in-place ``addmm_`` for the
  residual form and ``nn.Linear`` + GELU for the activation form.

Same maths as the plain modules: results differ by float32 (or bfloat16) round-off only — the
parity tests run the fused path against the reference too (``tests/model/test_fused.py``).
"""

from __future__ import annotations

import functools
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Narrower blocks keep the plain path: their GEMMs are too small for the fusion to pay.
FUSE_MIN_WIDTH = 256

_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fused linear op (CPU builds for x86/ARM do)."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(
            torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def use_fused(x: Tensor) -> bool:
    """Whether a block may take the fused path on tokens ``x`` (..., C): inference only (no
    autograd; training takes :func:`ddhpose.model.linear_grad.linear_train`), width C >=
    :data:`FUSE_MIN_WIDTH`, no autocast."""
    if torch.is_grad_enabled() or x.shape[-1] < FUSE_MIN_WIDTH:
        return False
    try:
        return not torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device type without autocast (e.g. meta)
        return True


@functools.cache
def onednn_bf16_cpu() -> bool:
    """Whether this CPU runs oneDNN's bfloat16 kernels (AVX-512 BF16, AMX or similar);
    elsewhere bfloat16 inputs take the plain path."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _onednn(x: Tensor, lin: nn.Linear) -> bool:
    if x.device.type != "cpu" or x.dtype not in _ONEDNN_DTYPES or lin.weight.dtype != x.dtype:
        return False
    return onednn_available() and (x.dtype != torch.bfloat16 or onednn_bf16_cpu())


# Linear -> (weight identity, oneDNN-packed weight); weak keys: a dropped model frees its copies.
_PACKED: weakref.WeakKeyDictionary[nn.Linear, tuple[tuple, Tensor]] = weakref.WeakKeyDictionary()


def packed_weight(lin: nn.Linear, rows: int) -> Tensor:
    """``lin.weight`` reordered once into oneDNN's blocked GEMM layout (a few % faster than
    handing it the plain weight, which oneDNN then reorders on every call).

    Cached per module, outside ``state_dict``; rebuilt when the weight changes (new storage, an
    in-place update such as an optimizer step or ``load_state_dict``, or a dtype change).
    ``rows`` (the GEMM's M) is only a tuning hint. Falls back to the plain weight on builds
    without the reorder op, and for inference tensors (made under ``torch.inference_mode``),
    whose in-place updates cannot be detected.
    """
    w = lin.weight
    if w.is_inference():
        return w.detach()
    key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
    hit = _PACKED.get(lin)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), rows)
    except (AttributeError, RuntimeError):
        packed = w.detach()
    _PACKED[lin] = (key, packed)
    return packed


def add_linear(x: Tensor, a: Tensor, lin: nn.Linear) -> Tensor:
    """``x + lin(a)`` in one GEMM: x (..., C_out) residual, a (..., C_in) -> (..., C_out)."""
    a2 = a.reshape(-1, a.shape[-1])
    if _onednn(a, lin):
        out = torch.ops.mkldnn._linear_pointwise.binary(
            a2, x.reshape(-1, x.shape[-1]), packed_weight(lin, a2.shape[0]), lin.bias, "add")
        return out.view(x.shape)
    # (x + b) + a·Wᵀ as one in-place addmm on a fresh copy: no bias broadcast, no extra add
    out = (x + lin.bias) if lin.bias is not None else x.clone()
    out = out.contiguous()
    out.view(-1, out.shape[-1]).addmm_(a2, lin.weight.t())
    return out


def _onednn_linear(a: Tensor, lin: nn.Linear, attr: str, algorithm: str) -> Tensor:
    """oneDNN ``lin(a)`` with an elementwise epilogue ``attr`` ("none" or "gelu")."""
    a2 = a.reshape(-1, a.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(
        a2, packed_weight(lin, a2.shape[0]), lin.bias, attr, [], algorithm)
    return out.view(*a.shape[:-1], out.shape[-1])


def linear_gelu(a: Tensor, lin: nn.Linear) -> Tensor:
    """``gelu(lin(a))`` with the exact (erf) GELU: a (..., C_in) -> (..., C_out)."""
    if _onednn(a, lin):
        return _onednn_linear(a, lin, "gelu", "none")  # algorithm "none" = erf, not tanh
    return F.gelu(lin(a))


def linear(a: Tensor, lin: nn.Linear) -> Tensor:
    """``lin(a)``: a (..., C_in) -> (..., C_out)."""
    return _onednn_linear(a, lin, "none", "") if _onednn(a, lin) else lin(a)


__all__ = ["FUSE_MIN_WIDTH", "add_linear", "linear", "linear_gelu", "onednn_available",
           "onednn_bf16_cpu", "packed_weight", "use_fused"]

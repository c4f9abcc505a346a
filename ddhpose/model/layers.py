"""Transformer building blocks of the denoiser (docs/model.md "Layer order"): stochastic depth,
truncated-normal init, MLP, multi-head self-attention and the plain pre-norm block.

No timm (docs/model.md "Done differently"). Submodule names (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``) equal the reference's so its state_dict loads with
``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddhpose.model.fused import add_linear, linear, linear_gelu, use_fused
from ddhpose.model.linear_grad import linear_train

# A mask provider gets (mask shape, keep probability, the tensor being masked) and returns the
# per-sample multiplier, already divided by the keep probability (shape (N, 1, ..., 1)).
MaskFn = Callable[[tuple[int, ...], float, Tensor], Tensor]


def drop_path(
    x: Tensor, drop_prob: float, training: bool, mask_fn: MaskFn | None = None
) -> Tensor:
    """Per-sample stochastic depth: zero whole leading-axis samples of a residual branch.

    ``x`` (N, ...) is multiplied by a mask (N, 1, ..., 1) of Bernoulli(keep)/keep values, keep =
    1 - drop_prob; identity when not training or drop_prob == 0 (no random draw then). ``mask_fn``
    replaces the Bernoulli draw (used to replay recorded masks).
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    if mask_fn is not None:
        mask = mask_fn(shape, keep, x).to(device=x.device, dtype=x.dtype)
        if tuple(mask.shape) != shape:
            raise ValueError(f"drop-path mask has shape {tuple(mask.shape)}, expected {shape}")
    else:
        mask = x.new_empty(shape).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; set ``mask_fn`` (or use :func:`set_drop_path_mask_fn`)
    to inject masks."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.mask_fn: MaskFn | None = None

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training, self.mask_fn)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4g}"


def set_drop_path_mask_fn(module: nn.Module, mask_fn: MaskFn | None) -> int:
    """Install ``mask_fn`` on every :class:`DropPath` inside ``module``; returns how many."""
    count = 0
    for sub in module.modules():
        if isinstance(sub, DropPath):
            sub.mask_fn = mask_fn
            count += 1
    return count


@torch.no_grad()
def trunc_normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> Tensor:
    """Fill ``tensor`` in place with N(mean, std²) truncated to [a, b] (absolute bounds).

    Inverse-CDF sampling: draw U in [Φ(α), Φ(β)] uniformly and map it back through Φ⁻¹
    (computed with erfinv), then scale and clamp against round-off.
    """

    def norm_cdf(v: float) -> float:
        return (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0

    lo = norm_cdf((a - mean) / std)
    hi = norm_cdf((b - mean) / std)
    tensor.uniform_(2 * lo - 1, 2 * hi - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.0))
    tensor.add_(mean)
    tensor.clamp_(min=a, max=b)
    return tensor


def init_weights(module: nn.Module) -> None:
    """Reference init: Linear weight trunc-normal(std 0.02), bias 0; LayerNorm weight 1, bias 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Mlp(nn.Module):
    """fc1 (C -> hidden) · GELU (exact erf) · fc2 (hidden -> C). (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return linear_train(self.act(linear_train(x, self.fc1)), self.fc2)


class Attention(nn.Module):
    """Multi-head self-attention over the token axis. (N, T, C) -> (N, T, C).

    scores = q·kᵀ·d^-0.5 per head (d = C / heads), softmax over keys. ``fused=True`` uses
    ``scaled_dot_product_attention`` (same maths, fewer copies); ``fused=False`` forms the score
    matrix explicitly (subclasses edit it in :meth:`edit_scores`). ``with_xc`` adds the
    ``qkv_xc`` projection of the hierarchical blocks, registered between ``qkv`` and ``proj`` so
    the parameter order equals the reference's.
    """

    #: Split q, k, v with ``unbind`` (one gradient buffer in backward) rather than three
    #: ``qkv[i]`` selects (each backward fills a full-size zero tensor); ``False`` only for the
    #: ablation's original-style step. Same values either way.
    unbind_qkv: bool = True
    #: With autograd (training), the fused kernel is used only from this many tokens on: its
    #: forward + backward is about 2× faster than explicit scores at 243 frames (head dim 64) and
    #: about 2× slower at 17–27 tokens (the demo's joints and frames), measured on the CPU.
    sdpa_min_tokens_grad: int = 64

    def __init__(
        self, dim: int, num_heads: int = 8, qkv_bias: bool = True, fused: bool = True,
        with_xc: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        if with_xc:
            self.qkv_xc = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, T, C) -> q, k, v each (N, heads, T, d)."""
        n, t, _ = x.shape
        qkv = linear(x, self.qkv) if use_fused(x) else linear_train(x, self.qkv)
        qkv = qkv.reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.unbind_qkv:
            q, k, v = qkv.unbind(0)  # backward: one stack of the three gradients
            return q, k, v
        return qkv[0], qkv[1], qkv[2]  # backward: three zero-filled full-size gradients

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, edit: bool = False, project: bool = True
    ) -> Tensor:
        """softmax(q·kᵀ·scale [edited]) · v, merged back to (N, T, C) and projected
        (``project=False``: not projected, for :func:`ddhpose.model.fused.add_linear`)."""
        if self.fused and not edit and (q.shape[-2] >= self.sdpa_min_tokens_grad
                                        or not torch.is_grad_enabled()):
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if edit:
                scores = self.edit_scores(scores)
            out = scores.softmax(dim=-1) @ v
        n, _, t, _ = out.shape
        merged = out.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim)
        return linear_train(merged, self.proj) if project else merged

    def edit_scores(self, scores: Tensor) -> Tensor:  # pragma: no cover - overridden
        return scores

    def forward(self, x: Tensor, project: bool = True) -> Tensor:
        q, k, v = self.split_qkv(x)
        return self.attend(q, k, v, project=project)


class Block(nn.Module):
    """Pre-norm transformer block: x + DP(attn(norm1 x)); x + DP(mlp(norm2 x)). (N, T, C) -> same.

    ``spatial`` records whether the token axis is the joint axis (spatial) or the frame axis
    (temporal); the plain block behaves the same either way.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        spatial: bool = True,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.spatial = spatial
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = self.make_attention(dim, num_heads, qkv_bias, fused)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def make_attention(self, dim: int, num_heads: int, qkv_bias: bool, fused: bool) -> nn.Module:
        return Attention(dim, num_heads, qkv_bias, fused)

    def forward(self, x: Tensor) -> Tensor:
        if use_fused(x):
            x = add_linear(x, self.attn(self.norm1(x), project=False), self.attn.proj)
            return add_linear(x, linear_gelu(self.norm2(x), self.mlp.fc1), self.mlp.fc2)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "MaskFn",
    "Mlp",
    "drop_path",
    "init_weights",
    "set_drop_path_mask_fn",
    "trunc_normal_",
]

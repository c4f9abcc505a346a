"""The training optimizer: AdamW with the reference's settings, in torch's fastest kernel."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw_options(device: torch.device) -> dict[str, bool]:
    """AdamW implementation flags for parameters on ``device``: ``fused=True`` (one kernel over
    all parameters) where torch has the fused kernel for the device (CPU and CUDA here), else
    ``foreach=True``. Same update rule as the per-tensor loop; the round-off differs slightly."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
        fused = device.type in _get_fused_kernels_supported_devices()
    except ImportError:  # pragma: no cover - a torch without the helper
        fused = device.type == "cuda"
    return {"fused": True} if fused else {"foreach": True}


def make_adamw(params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW(betas (0.9, 0.999), eps 1e-8) over ``params`` with :func:`adamw_options`."""
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=weight_decay, **adamw_options(device))


def adamw_impl(optimizer: torch.optim.Optimizer) -> str:
    """``"fused"``, ``"foreach"`` or ``"for-loop"``: the kernel ``optimizer`` steps with (recorded
    in the run's checkpoints)."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "for-loop"


__all__ = ["adamw_impl", "adamw_options", "make_adamw"]

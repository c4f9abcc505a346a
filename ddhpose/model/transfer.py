"""Host -> device copies that do not stall the GPU.

A blocking CPU -> CUDA copy of pageable memory waits for everything queued on the stream (a
host-device synchronisation). :func:`to_device` copies from page-locked (pinned) memory with
``non_blocking=True`` instead, so the CPU keeps queueing work; the caching host allocator keeps
the pinned buffer alive until the copy has run. On the CPU it is a plain ``.to``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_device(x: Tensor, device: torch.device | str | None,
              dtype: torch.dtype | None = None) -> Tensor:
    """``x`` (any shape) on ``device`` in ``dtype`` (default: its own); values unchanged.

    A CPU tensor going to CUDA is cast on the CPU, pinned and copied asynchronously; every other
    case is ``x.to(device, dtype)`` (a no-op when nothing changes).
    """
    dev = torch.device(device) if device is not None else x.device
    if dev.type == "cuda" and x.device.type == "cpu":
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        return x.pin_memory().to(dev, non_blocking=True)
    return x.to(device=dev, dtype=dtype)


__all__ = ["to_device"]

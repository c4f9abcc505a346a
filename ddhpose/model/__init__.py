"""The DDHPose model: configuration (:mod:`.config`), the hierarchical spatial-temporal denoiser
(:mod:`.denoiser`, :mod:`.layers`, :mod:`.fused`), bone diffusion (:mod:`.diffusion`), DDIM
sampling (:mod:`.sampler`), losses (:mod:`.losses`), the wrapper :class:`DDHPose`
(:mod:`.ddhpose`) and checkpoints (:mod:`.checkpoint`).

``from ddhpose.model import DDHPose, ModelConfig`` works; the modules load on first use, so that
importing the light :mod:`.config` does not load torch and the network code.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"DDHPose": "ddhpose.model.ddhpose", "ModelConfig": "ddhpose.model.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ddhpose.model' has no attribute {name!r}")


__all__ = ["DDHPose", "ModelConfig"]

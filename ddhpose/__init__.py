"""ddhpose: a reproducible implementation of DDHPose (Cai et al., AAAI 2024)."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: `import ddhpose` stays light; torch and the model load on first use of load_model.
    if name == "load_model":
        return importlib.import_module("ddhpose.model.checkpoint").load_model
    raise AttributeError(f"module 'ddhpose' has no attribute {name!r}")

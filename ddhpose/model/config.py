"""The model's configuration (:class:`ModelConfig`): architecture and diffusion settings under
params.yaml's key names, with their value rules. Imports no torch, so the pipeline can check
params.yaml without loading the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from ddhpose.errors import ConfigError

XC_LAYOUTS = ("reference", "transpose")
DATASETS = ("h36m", "3dhp")
#: ``train.amp`` modes and ``sample.dtype`` names (resolved per device in :mod:`.precision`)
AMP_MODES = ("off", "fp16", "bf16", "auto")
SAMPLE_DTYPES = ("auto", "float32", "float16", "bfloat16")


def amp_mode(value: str | bool) -> str:
    """A training ``amp`` value as one of :data:`AMP_MODES` (``True`` -> ``auto``, ``False`` ->
    ``off``: the YAML booleans, kept since params keys are public); ValueError for anything
    else."""
    if value is True:
        return "auto"
    if value is False:
        return "off"
    if isinstance(value, str) and value in AMP_MODES:
        return value
    raise ValueError(f"must be one of {'|'.join(AMP_MODES)} (or true/false), got {value!r}")


@dataclass
class ModelConfig:
    """Architecture and diffusion settings: ``data.dataset`` plus the ``model`` section of
    params.yaml, under the same names (no defaults: the demo's values live in params.yaml, the
    paper's in ``configs/``; :meth:`from_params` is the adapter).

    dataset: ``"h36m"`` or ``"3dhp"`` (skeleton tables and units); width C, depth L (1 plain +
    L−1 hierarchical layers), heads, mlp_ratio, frames F, timesteps T, scale (signal scale),
    drop_path (maximum stochastic-depth rate, training only), xc_layout
    (``"reference"`` | ``"transpose"``, see :mod:`ddhpose.model.denoiser`). Fixed by the
    original model, not configurable in params.yaml: qkv_bias, eta (DDIM), clamp (bound of noisy
    inputs and predictions, in units of ``scale``, metres).
    """

    dataset: str
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    frames: int
    timesteps: int
    scale: float
    drop_path: float
    xc_layout: str
    qkv_bias: bool = True
    eta: float = 1.0
    clamp: float = 1.1

    @classmethod
    def from_params(cls, dataset: str, model: Any) -> ModelConfig:
        """The config of params.yaml's ``model`` section (any object with its field names)."""
        return cls(dataset=dataset, **{f.name: getattr(model, f.name) for f in fields(cls)
                                       if f.name != "dataset" and hasattr(model, f.name)})

    def validate(self) -> ModelConfig:
        """Raise :class:`ConfigError` naming the first bad field; return self."""
        if self.dataset not in DATASETS:
            raise ConfigError("data.dataset", f"must be one of {'|'.join(DATASETS)}, "
                                              f"got {self.dataset!r}")
        if self.xc_layout not in XC_LAYOUTS:
            raise ConfigError("model.xc_layout", f"must be one of {'|'.join(XC_LAYOUTS)}, "
                                                 f"got {self.xc_layout!r}")
        for name in ("width", "depth", "heads", "frames", "timesteps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError("model.width", f"must be divisible by model.heads ({self.heads}), "
                                             f"got {self.width}")
        if self.width % 2 or self.width < 4:
            raise ConfigError("model.width", f"must be even and >= 4, got {self.width}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError("model.drop_path", f"must be in [0, 1), got {self.drop_path}")
        for name in ("mlp_ratio", "scale", "clamp"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build from a plain dict; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model.{unknown[0]}", "unknown model setting")
        missing = [f.name for f in fields(cls)
                   if f.name not in d and f.default is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"model.{missing[0]}", "missing model setting")
        return cls(**d).validate()

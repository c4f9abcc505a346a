"""The project's own configuration, shrunk by tests (values live in params.yaml only).

``demo_params()`` is params.yaml as loaded by the pipeline; ``demo_model(**overrides)``,
``demo_train(**overrides)`` and ``demo_synthetic(**overrides)`` are the library configs built from
it by the same adapters the stages use, with the given fields replaced.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from ddhpose.config.schema import Params, deep_merge, load_params, read_yaml
from ddhpose.model import ModelConfig
from ddhpose.synthetic.config import SyntheticConfig
from ddhpose.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params.yaml"
PAPER_H36M = ROOT / "configs" / "paper_h36m_cpn.yaml"


@functools.cache
def demo_params() -> Params:
    return load_params(PARAMS_FILE)


def demo_model(**overrides: Any) -> ModelConfig:
    p = demo_params()
    return dataclasses.replace(ModelConfig.from_params(p.data.dataset, p.model), **overrides)


def paper_model() -> ModelConfig:
    """The model of ``configs/paper_h36m_cpn.yaml`` applied to params.yaml."""
    p = Params.from_dict(deep_merge(read_yaml(PARAMS_FILE), read_yaml(PAPER_H36M)))
    return ModelConfig.from_params(p.data.dataset, p.model)


def demo_train(**overrides: Any) -> TrainConfig:
    return dataclasses.replace(demo_params().train, **overrides)


def demo_synthetic(**overrides: Any) -> SyntheticConfig:
    return dataclasses.replace(SyntheticConfig.from_params(demo_params().data), **overrides)


def tiny_model(frames: int = 9) -> Any:
    """The inference and command tests' model: the demo config shrunk to width 16, depth 2,
    2 heads and ``frames`` F, random weights (seed 0), in eval mode."""
    import torch

    from ddhpose.model.ddhpose import DDHPose

    torch.manual_seed(0)
    return DDHPose(demo_model(width=16, depth=2, heads=2, frames=frames)).eval()


def tiny_checkpoint(folder: Path, frames: int = 9) -> str:
    """:func:`tiny_model` saved as ``folder/tiny.pt``; the path as a string."""
    from ddhpose.model.checkpoint import save_checkpoint

    return str(save_checkpoint(folder / "tiny.pt", tiny_model(frames)))

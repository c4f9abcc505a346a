"""The DDHPose model: the hierarchical spatial-temporal denoiser and its diffusion wrapper."""

from ddhpose.model.ddhpose import DDHPose, ModelConfig

__all__ = ["DDHPose", "ModelConfig"]

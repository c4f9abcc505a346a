"""ddhpose: a reproducible implementation of DDHPose (Cai et al., AAAI 2024)."""

__version__ = "0.1.0"

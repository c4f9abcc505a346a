"""Per-joint uncertainty from DDHPose's H hypotheses (docs/evaluation.md
"Temporal quality and uncertainty")."""

from __future__ import annotations

import numpy as np


def joint_spread(hypotheses: np.ndarray) -> np.ndarray:
    """Per-joint spread over hypotheses: the Euclidean norm of the per-coordinate standard
    deviation (population, ddof 0) over the H axis, ``‖std_h(x_h)‖`` — the length of the
    hypotheses' standard-deviation vector, as ``ddhpose infer`` reports it.

    Args:
        hypotheses: (..., H, J, 3) poses in any unit (metres in, metres out).
    Returns:
        (..., J) float spread in the input unit; 0 where H = 1 or every hypothesis agrees.
    """
    hyp = np.asarray(hypotheses)
    if hyp.ndim < 3 or hyp.shape[-1] != 3:
        raise ValueError(f"joint_spread: expected (..., H, J, 3) hypotheses, got {hyp.shape}")
    return np.linalg.norm(hyp.std(axis=-3), axis=-1)


__all__ = ["joint_spread"]

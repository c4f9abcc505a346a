"""Pose error metrics: MPJPE, P-MPJPE (Procrustes), N-MPJPE and MPJVE (docs/model.md
"Aggregations").

Pure functions over NumPy arrays or torch tensors, vectorised over any leading dimensions. Poses are
``(..., J, 3)``; the result is in the unit of the inputs (metres in, metres out: scale to mm for
reporting). Every function returns the same kind of object it was given (a 0-d array / tensor for
the scalar means).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _check_pair(pred: Any, target: Any, name: str) -> None:
    """Shapes must broadcast against each other and agree on the (J, C) axes."""
    try:
        np.broadcast_shapes(tuple(pred.shape), tuple(target.shape))
    except ValueError:
        ok = False
    else:
        ok = tuple(pred.shape[-2:]) == tuple(target.shape[-2:])
    if not ok:
        raise ValueError(
            f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} do not match"
        )
    if pred.ndim < 2:
        raise ValueError(f"{name}: expected (..., J, C) poses, got shape {tuple(pred.shape)}")


def _norm_last(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return torch.linalg.vector_norm(x, dim=-1)
    return np.linalg.norm(x, axis=-1)


def joint_errors(pred: Array, target: Array) -> Array:
    """Euclidean error of every joint: (..., J, 3), (..., J, 3) -> (..., J) (shapes broadcast)."""
    _check_pair(pred, target, "joint_errors")
    return _norm_last(pred - target)


def mpjpe(pred: Array, target: Array) -> Array:
    """Mean per-joint position error (protocol #1): mean over every leading axis and joint."""
    return joint_errors(pred, target).mean()


def per_frame_mpjpe(pred: Array, target: Array) -> Array:
    """MPJPE of every pose: (..., J, 3) -> (...), the mean over joints."""
    return joint_errors(pred, target).mean(-1)


def per_joint_mpjpe(pred: Array, target: Array) -> Array:
    """MPJPE of every joint: (..., J, 3) -> (J,), the mean over all leading axes."""
    e = joint_errors(pred, target)
    return e.reshape(-1, e.shape[-1]).mean(0)


# --- Procrustes -----------------------------------------------------------------------------------


def procrustes_align(pred: Array, target: Array) -> Array:
    """Rigidly align each predicted pose to its target with a similarity transform (docs/model.md
    "Aggregations", protocol #2).

    Both poses are centred and normalised by their Frobenius norms; ``R`` comes from the SVD of
    ``X0ᵀ Y0`` (X = target, Y = prediction) with the reflection fix ``sign(det R)`` applied to the
    last singular vector and value, the scale is ``trace · ‖X‖ / ‖Y‖``, and the translation maps
    the prediction's centroid onto the target's.

    Args:
        pred, target: (..., J, 3) poses. Torch inputs are aligned in torch (same dtype), NumPy
            inputs in float64.
    Returns:
        (..., J, 3) the aligned prediction.
    """
    _check_pair(pred, target, "procrustes_align")
    if isinstance(pred, torch.Tensor):
        return _procrustes_torch(pred, torch.as_tensor(target, dtype=pred.dtype))
    return _procrustes_numpy(np.asarray(pred, np.float64), np.asarray(target, np.float64))


def _procrustes_numpy(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    mu_x = target.mean(-2, keepdims=True)
    mu_y = pred.mean(-2, keepdims=True)
    x0, y0 = target - mu_x, pred - mu_y
    norm_x = np.sqrt((x0**2).sum(axis=(-2, -1), keepdims=True))
    norm_y = np.sqrt((y0**2).sum(axis=(-2, -1), keepdims=True))
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = np.linalg.svd(np.swapaxes(x0, -1, -2) @ y0)
    v = np.swapaxes(vt, -1, -2)
    sign = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    v = v.copy()
    v[..., :, -1] *= sign[..., None]
    s = s.copy()
    s[..., -1] *= sign
    rot = v @ np.swapaxes(u, -1, -2)
    scale = s.sum(-1)[..., None, None] * norm_x / norm_y
    trans = mu_x - scale * (mu_y @ rot)
    return scale * (pred @ rot) + trans


def _procrustes_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mu_x = target.mean(-2, keepdim=True)
    mu_y = pred.mean(-2, keepdim=True)
    x0, y0 = target - mu_x, pred - mu_y
    norm_x = (x0**2).sum(dim=(-2, -1), keepdim=True).sqrt()
    norm_y = (y0**2).sum(dim=(-2, -1), keepdim=True).sqrt()
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = torch.linalg.svd(x0.transpose(-1, -2) @ y0)
    v = vt.transpose(-1, -2)
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    fix = torch.ones_like(s)
    fix[..., -1] = sign
    v = v * fix[..., None, :]
    s = s * fix
    rot = v @ u.transpose(-1, -2)
    scale = s.sum(-1)[..., None, None] * norm_x / norm_y
    trans = mu_x - scale * (mu_y @ rot)
    return scale * (pred @ rot) + trans


def p_mpjpe(pred: Array, target: Array) -> Array:
    """Procrustes-aligned MPJPE (protocol #2): every pose aligned separately, then the mean."""
    return joint_errors(procrustes_align(pred, target), _as_like(target, pred)).mean()


def p_joint_errors(pred: Array, target: Array) -> Array:
    """Per-joint errors after per-pose Procrustes alignment: (..., J, 3) -> (..., J)."""
    return joint_errors(procrustes_align(pred, target), _as_like(target, pred))


def _as_like(target: Any, pred: Any) -> Any:
    if isinstance(pred, torch.Tensor):
        return torch.as_tensor(target, dtype=pred.dtype)
    return np.asarray(target, np.float64)


# --- scale-normalised and velocity errors ---------------------------------------------------------


def n_mpjpe(pred: Array, target: Array) -> Array:
    """Scale-normalised MPJPE: each pose scaled by ``<target, pred> / <pred, pred>`` first."""
    _check_pair(pred, target, "n_mpjpe")
    if isinstance(pred, torch.Tensor):
        num = (target * pred).sum(dim=(-2, -1), keepdim=True)
        den = (pred * pred).sum(dim=(-2, -1), keepdim=True)
    else:
        num = (target * pred).sum(axis=(-2, -1), keepdims=True)
        den = (pred * pred).sum(axis=(-2, -1), keepdims=True)
    return mpjpe(num / den * pred, target)


def mpjve(pred: Array, target: Array, frame_axis: int = -3) -> Array:
    """Mean per-joint velocity error: MPJPE of the first differences along ``frame_axis``, in
    input unit per frame (the mean of :func:`ddhpose.evaluation.temporal.velocity_error`, which
    gives it per frame and joint; the evaluate stage's per-sequence tables use that one).

    Args:
        pred, target: (..., F, J, 3) pose sequences (F >= 2 along ``frame_axis``).
    """
    _check_pair(pred, target, "mpjve")
    if pred.shape[frame_axis] < 2:
        raise ValueError(
            f"mpjve needs at least 2 frames on axis {frame_axis}, got {tuple(pred.shape)}"
        )
    if isinstance(pred, torch.Tensor):
        return mpjpe(torch.diff(pred, dim=frame_axis), torch.diff(target, dim=frame_axis))
    return mpjpe(np.diff(pred, axis=frame_axis), np.diff(target, axis=frame_axis))


__all__ = [
    "joint_errors",
    "mpjpe",
    "mpjve",
    "n_mpjpe",
    "p_joint_errors",
    "p_mpjpe",
    "per_frame_mpjpe",
    "per_joint_mpjpe",
    "procrustes_align",
]

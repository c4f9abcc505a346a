"""Temporal quality of pose sequences: velocity and acceleration errors, jitter, and a
Savitzky–Golay smoothing filter along time (docs/evaluation.md "Temporal quality and uncertainty").

Poses are ``(T, J, 3)`` sequences of consecutive frames in any unit (metres in, metres out); the
finite differences are taken along axis 0, so a velocity is in input unit per frame and an
acceleration in input unit per frame². A sequence must not be concatenated with another before
calling these: a difference across the seam would mix two sequences
(:mod:`ddhpose.evaluation.temporal_report` works per sequence and per run of valid frames).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter


def _check_sequence(poses: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected (T, J, 3) poses, got shape {arr.shape}")
    return arr


def _check_pair(pred: np.ndarray, gt: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    p, g = _check_sequence(pred, name), _check_sequence(gt, name)
    if p.shape != g.shape:
        raise ValueError(f"{name}: prediction {p.shape} and ground truth {g.shape} differ")
    return p, g


def velocity_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame, per-joint velocity error: ``‖Δpred_t − Δgt_t‖`` with ``Δx_t = x_{t+1} − x_t``.

    Args:
        pred, gt: (T, J, 3) poses of one sequence of consecutive frames.
    Returns:
        (T-1, J) float64 in input unit per frame (empty for T < 2). Its mean is the MPJVE
        (:func:`ddhpose.evaluation.metrics.mpjve`).
    """
    p, g = _check_pair(pred, gt, "velocity_error")
    return np.linalg.norm(np.diff(p, axis=0) - np.diff(g, axis=0), axis=-1)


def acceleration_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame, per-joint acceleration error: ``‖Δ²pred_t − Δ²gt_t‖`` with the second
    difference ``Δ²x_t = x_{t+2} − 2 x_{t+1} + x_t``.

    Args:
        pred, gt: (T, J, 3) poses of one sequence of consecutive frames.
    Returns:
        (T-2, J) float64 in input unit per frame² (empty for T < 3).
    """
    p, g = _check_pair(pred, gt, "acceleration_error")
    return np.linalg.norm(np.diff(p, n=2, axis=0) - np.diff(g, n=2, axis=0), axis=-1)


def jitter(poses: np.ndarray) -> float:
    """Mean acceleration magnitude ``mean ‖Δ²x_t‖`` over frames and joints of a (T, J, 3)
    sequence, in input unit per frame²; 0.0 for T < 3. A constant-velocity motion has none."""
    p = _check_sequence(poses, "jitter")
    if p.shape[0] < 3:
        return 0.0
    return float(np.linalg.norm(np.diff(p, n=2, axis=0), axis=-1).mean())


def smooth_poses(poses: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky–Golay filter of a (T, J, 3) sequence along time, per joint and coordinate.

    Each frame is replaced by the value at that frame of the degree-``order`` polynomial fitted
    by least squares to the ``window`` frames centred on it (the ends fit the first / last window,
    ``mode="interp"``), so motion that is polynomial of degree <= ``order`` within a window
    passes unchanged and frame-to-frame jitter is damped.

    Args:
        poses: (T, J, 3) poses in any unit.
        window: odd number of frames >= 3; shrunk to the largest odd window <= T for a short
            sequence (T >= 3). The default the project uses is the params key
            ``eval.smooth_window`` (ddhpose/config/schema.py).
        order: polynomial degree, < the window actually used (lowered to window - 1 when the
            window shrinks below it).
    Returns:
        (T, J, 3) smoothed poses, same dtype as the input (a copy; identity for T < 3).
    Raises:
        ValueError: a window that is even or < 3, a negative order, or poses not (T, J, 3).
    """
    if isinstance(window, bool) or int(window) != window or window < 3 or window % 2 == 0:
        raise ValueError(f"smooth_poses: window must be an odd integer >= 3, got {window!r}")
    if isinstance(order, bool) or int(order) != order or order < 0:
        raise ValueError(f"smooth_poses: order must be an integer >= 0, got {order!r}")
    src = np.asarray(poses)
    arr = _check_sequence(src, "smooth_poses")
    t_len = arr.shape[0]
    out_dtype = src.dtype if np.issubdtype(src.dtype, np.floating) else np.float64
    if t_len < 3:
        return arr.astype(out_dtype, copy=True)
    win = min(int(window), t_len if t_len % 2 else t_len - 1)
    deg = min(int(order), win - 1)
    return savgol_filter(arr, win, deg, axis=0, mode="interp").astype(out_dtype)


__all__ = ["acceleration_error", "jitter", "smooth_poses", "velocity_error"]

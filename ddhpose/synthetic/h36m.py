"""The deterministic synthetic Human3.6M dataset, written in the real files' layout.

The motion comes from the procedural body model (:mod:`ddhpose.synthetic.motion`); 2D keypoints are
projections with the real Human3.6M cameras (and pinhole 3DHP-like cameras), so every downstream
stage runs unchanged on real data. Every sequence has its own random stream derived from the
seed and the sequence's name, so shrinking the config (fewer subjects, actions) leaves the other
sequences unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from ddhpose.camera import (
    h36m_camera,
    image_coordinates,
    project_to_2d,
    world_to_camera,
)
from ddhpose.data import h36m
from ddhpose.skeleton import H36M17, reduce_h36m32
from ddhpose.synthetic.actions import generate_motion
from ddhpose.synthetic.body import sample_body
from ddhpose.synthetic.config import SyntheticConfig, stream
from ddhpose.synthetic.motion import sample_style

# Limb pairs that a detector may confuse: (left joints, right joints) in the H36M 17 layout.
_SWAPS = (((4, 5, 6), (1, 2, 3)), ((11, 12, 13), (14, 15, 16)), ((6,), (3,)), ((13,), (16,)))
# Per-joint detection noise factor: extremities are noisier than the torso.
_JOINT_NOISE = np.array(
    [0.8, 1.0, 1.1, 1.4, 1.0, 1.1, 1.4, 0.8, 0.8, 0.9, 1.0, 1.0, 1.3, 1.6, 1.0, 1.3, 1.6]
)


# --- Human3.6M ------------------------------------------------------------------------------------


def h36m_sequence_names(cfg: SyntheticConfig, subject: str) -> list[tuple[str, str]]:
    """(action, sequence name) pairs of a subject; S11 has no Directions, as in the real data."""
    names = []
    for action in cfg.selected_actions():
        if subject == "S11" and action == "Directions":
            continue
        names.extend((action, f"{action} {k}") for k in range(1, cfg.subactions + 1))
    return names


def synthesize_h36m_3d(cfg: SyntheticConfig) -> dict[str, dict[str, np.ndarray]]:
    """Raw mocap: ``{subject: {"<Action> k": (N, 32, 3) float32}}`` world metres."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject in cfg.subjects:
        body = sample_body(stream(cfg.seed, "h36m-body", subject))
        style = sample_style(stream(cfg.seed, "h36m-style", subject))
        out[subject] = {
            name: generate_motion(
                action, body, style, stream(cfg.seed, "h36m-motion", subject, name),
                cfg.frames,
            ).astype(np.float32)
            for action, name in h36m_sequence_names(cfg, subject)
        }
    return out


def project_h36m(positions_32: np.ndarray, subject: str) -> list[np.ndarray]:
    """World mocap (N, 32, 3) m -> 4 arrays (N, 17, 2) float32 pixels (one per camera)."""
    pos17 = reduce_h36m32(positions_32)
    views = []
    for idx in range(4):
        cam = h36m_camera(subject, idx)
        x_cam = world_to_camera(pos17, cam.orientation, cam.translation)
        uv = image_coordinates(project_to_2d(x_cam, cam.intrinsic), cam.res_w, cam.res_h)
        views.append(uv.astype(np.float32))
    return views


def detect(gt_px: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Fake detector output from GT keypoints (N, 17, 2) px -> (N, 17, 2) float32 px.

    Adds a per-joint bias (constant over the sequence), temporally correlated jitter (AR(1),
    correlation 0.6 between frames; larger for wrists and ankles) and sparse outliers: left/right
    limb swaps or a joint jumping away, lasting 1-4 frames.
    """
    n = gt_px.shape[0]
    scale = _JOINT_NOISE[None, :, None]
    bias = rng.normal(0.0, cfg.bias_px, size=(1, 17, 2)) * scale
    rho = 0.6
    white = rng.normal(0.0, cfg.jitter_px * np.sqrt(1 - rho**2), size=(n, 17, 2))
    white[0] /= np.sqrt(1 - rho**2)  # start in the stationary distribution
    jitter = lfilter([1.0], [1.0, -rho], white, axis=0)
    det = gt_px + bias + jitter * scale
    # ~8.75 affected (frame, joint) entries per event on average (3.5 joints x 2.5 frames)
    p_start = min(1.0, cfg.outlier_rate * 17 / 8.75)
    for start in np.flatnonzero(rng.random(n) < p_start):
        stop = min(n, start + int(rng.integers(1, 5)))
        if rng.random() < 0.5:
            left, right = _SWAPS[int(rng.integers(len(_SWAPS)))]
            seg = det[start:stop].copy()
            det[start:stop, list(left)] = seg[:, list(right)]
            det[start:stop, list(right)] = seg[:, list(left)]
        else:
            joint = int(rng.integers(17))
            det[start:stop, joint] += rng.normal(0.0, cfg.outlier_px, size=2)
    return det.astype(np.float32)


def write_synthetic_h36m(
    out_dir: str | Path, cfg: SyntheticConfig
) -> dict[str, Path]:
    """Write ``data_3d_h36m.npz``, ``data_2d_h36m_gt.npz`` and ``data_2d_h36m_detections.npz``.

    Returns ``{"3d": path, "2d_gt": path, "2d_detections": path}``.
    """
    out_dir = Path(out_dir)
    positions_3d = synthesize_h36m_3d(cfg)
    gt: dict[str, dict[str, list[np.ndarray]]] = {}
    dets: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in positions_3d.items():
        gt[subject], dets[subject] = {}, {}
        for name, pos in actions.items():
            views = project_h36m(pos, subject)
            gt[subject][name] = views
            dets[subject][name] = [
                detect(v, cfg, stream(cfg.seed, "h36m-detect", subject, name, cam))
                for cam, v in enumerate(views)
            ]
    paths = {
        "3d": out_dir / "data_3d_h36m.npz",
        "2d_gt": h36m.positions_2d_path(out_dir, "gt"),
        "2d_detections": h36m.positions_2d_path(out_dir, "detections"),
    }
    h36m.save_positions_3d(paths["3d"], positions_3d)
    metadata = {
        "layout_name": "h36m", "num_joints": 17,
        "keypoints_symmetry": [list(H36M17.joints_left), list(H36M17.joints_right)],
    }
    h36m.save_positions_2d(paths["2d_gt"], gt, metadata)
    h36m.save_positions_2d(paths["2d_detections"], dets, metadata)
    return paths


__all__ = [
    "detect",
    "h36m_sequence_names",
    "project_h36m",
    "synthesize_h36m_3d",
    "write_synthetic_h36m",
]

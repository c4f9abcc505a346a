"""Tiny deterministic training data for smoke runs, tests and benchmarks.

:func:`synthetic_split` builds a processed split from random-walk bone directions with fixed bone
lengths and a pinhole projection to normalised 2D (no body model: seconds to make, any size).
"""

from __future__ import annotations

import numpy as np

from ddhpose.data.processed import ProcessedSplit, concat_sequences
from ddhpose.skeleton import Skeleton, get_skeleton

LAYOUTS = {"h36m": "h36m17", "3dhp": "3dhp17"}


def _forward_kinematics(bones: np.ndarray, skel: Skeleton) -> np.ndarray:
    """Bone vectors (N, 16, 3) in bone order -> joints (N, J, 3), root at 0 (any bone order)."""
    pos: dict[int, np.ndarray] = {skel.root: np.zeros((bones.shape[0], 3))}
    pending = list(enumerate(skel.bones))
    while pending:
        rest = []
        for k, (p, c) in pending:
            if p in pos:
                pos[c] = pos[p] + bones[:, k]
            else:
                rest.append((k, (p, c)))
        pending = rest
    return np.stack([pos[j] for j in range(skel.num_joints)], axis=1)


def synthetic_split(
    dataset: str = "h36m", sequences: int = 4, frames: int = 30, seed: int = 0,
    invalid_every: int = 0,
) -> ProcessedSplit:
    """A small split of smooth random poses: ``sequences`` × ``frames`` frames.

    Bone lengths are fixed per sequence (0.1–0.45 m), unit directions random-walk; the root sits
    4 m in front of a normalised pinhole camera (f = 2). ``invalid_every`` > 0 marks every n-th
    frame invalid (3DHP-style valid flags).
    """
    skel = get_skeleton(LAYOUTS[dataset])
    rs = np.random.RandomState(seed)
    parts = []
    for s in range(sequences):
        lengths = rs.uniform(0.1, 0.45, size=(1, skel.num_bones, 1))
        base = rs.randn(1, skel.num_bones, 3)
        walk = base + np.cumsum(rs.randn(frames, skel.num_bones, 3) * 0.05, axis=0)
        dirs = walk / np.linalg.norm(walk, axis=-1, keepdims=True)
        pose = _forward_kinematics(dirs * lengths, skel)  # root at 0
        traj = np.stack([np.zeros(frames), np.zeros(frames), np.full(frames, 4.0)], axis=-1)
        traj[:, 0] += np.cumsum(rs.randn(frames) * 0.01)
        absolute = pose + traj[:, None, :]
        uv = 2.0 * absolute[..., :2] / absolute[..., 2:3]
        valid = np.ones(frames, bool)
        if invalid_every > 0:
            valid[::invalid_every] = False
        parts.append({
            "pose_2d": uv.astype(np.float32), "pose_3d": pose.astype(np.float32),
            "traj": traj.astype(np.float32), "valid": valid,
            "activity": np.zeros(frames, np.int16), "seq_name": f"SYN{s}",
            "seq_subject": "SYN", "seq_action": f"Act{s % 2}", "seq_camera": 0,
            "intrinsic": np.array([2, 2, 0, 0, 0, 0, 0, 0, 0], np.float32),
            "intrinsic_px": np.array([500, 500, 500, 500, 0, 0, 0, 0, 0], np.float32),
            "res": (1000, 1000),
        })
    return concat_sequences(parts, dataset, LAYOUTS[dataset])

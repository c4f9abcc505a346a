"""Synthetic MPI-INF-3DHP sequences: mixed activities, seen by pinhole cameras (the layout of
docs/model.md "MPI-INF-3DHP files").

3D is in millimetres in camera coordinates (x right, y down, z forward), 2D in pixels, joints in
the 17-joint 3DHP order (:data:`ddhpose.skeleton.MPI3DHP17`). Test sequences TS1-TS4 use the
2048x2048 studio intrinsics, TS5-TS6 the 1920x1080 outdoor ones
(:func:`ddhpose.camera.mpi3dhp_test_intrinsic_px`); training cameras use the studio values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddhpose.camera import mpi3dhp_test_intrinsic_px, project_to_2d
from ddhpose.data import mpi3dhp as mpi3dhp_files
from ddhpose.synthetic.actions import generate_channels
from ddhpose.synthetic.body import Channels, pose32, sample_body
from ddhpose.synthetic.config import SyntheticConfig, stream
from ddhpose.synthetic.motion import (
    FPS,
    blend_channels,
    make_context,
    sample_style,
    smoothstep,
)

# 3DHP activity label (1..7) -> motion recipes that stand in for it.
ACTIVITY_RECIPES: dict[int, tuple[str, ...]] = {
    1: ("Walking", "Waiting", "Directions"),  # Standing/Walking
    2: ("Exercise",),  # Exercising
    3: ("Sitting", "Eating"),  # Sitting
    4: ("Reaching", "Purchases"),  # Reaching/Crouching
    5: ("FloorSit",),  # On The Floor
    6: ("Sports",),  # Sports
    7: ("Discussion", "Greeting", "Phoning", "Smoking", "Posing"),  # Miscellaneous
}
TRAIN_PLANS = ((1, 2, 3, 4), (5, 6, 7, 1))  # activities of Seq1, Seq2 (cycled beyond)
TEST_PLANS = {
    "TS1": (1, 2, 4, 7), "TS2": (1, 3, 6), "TS3": (3, 4, 7), "TS4": (1, 2, 5),
    "TS5": (1, 6, 7), "TS6": (2, 4, 7),
}
# raw H36M joint for each 3DHP joint; the 3DHP "head" (16) is the middle of nose and head top.
H36M32_FOR_3DHP = (15, 13, 25, 26, 27, 17, 18, 19, 1, 2, 3, 6, 7, 8, 0, 12, 15)


def to_3dhp17(positions_32: np.ndarray) -> np.ndarray:
    """Raw H36M mocap (..., 32, 3) -> 3DHP joint order (..., 17, 3)."""
    out = positions_32[..., list(H36M32_FOR_3DHP), :].copy()
    out[..., 16, :] = 0.5 * (positions_32[..., 14, :] + positions_32[..., 15, :])
    return out


def segment_weights(n: int, k: int, fps: int = FPS, trans_s: float = 1.5) -> np.ndarray:
    """(N, k) weights: k equal segments with smooth cross-fades of up to ``trans_s`` seconds."""
    t = np.arange(n, dtype=float)
    trans = max(1.0, min(trans_s * fps, n / (2 * k)))
    level = np.zeros(n)
    for i in range(1, k):
        level += smoothstep((t - i * n / k) / trans + 0.5)
    return np.clip(1 - np.abs(level[:, None] - np.arange(k)[None, :]), 0.0, 1.0)


def activity_motion(
    rng: np.random.Generator, subject_rng: np.random.Generator, activities: tuple[int, ...],
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One person doing ``activities`` in turn: (N, 32, 3) world metres and (N,) labels 1..7.

    ``subject_rng`` draws the body and style; ``rng`` the motion.
    """
    body = sample_body(subject_rng)
    style = sample_style(subject_rng)
    ctx = make_context(rng, body, style, n, FPS, area_radius=0.3, path_scale=0.45)
    parts: list[Channels] = []
    for act in activities:
        recipes = ACTIVITY_RECIPES[act]
        parts.append(generate_channels(recipes[int(rng.integers(len(recipes)))], ctx))
    w = segment_weights(n, len(activities))
    labels = np.asarray(activities, dtype=np.int64)[w.argmax(axis=1)]
    return pose32(blend_channels(parts, w), body), labels


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation (3, 3) (rows: camera x right, y down, z forward), z-up world."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def place_camera(
    rng: np.random.Generator, azimuth: float, distance: float, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """A camera ``distance`` m from the capture centre at ``height`` m, looking at the person.

    Returns (rotation (3, 3) world -> camera, centre (3,) metres).
    """
    eye = np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), height])
    target = np.array([*rng.normal(0.0, 0.1, 2), 0.9 + rng.normal(0.0, 0.1)])
    return look_at(eye, target), eye


def view(
    positions_32: np.ndarray, rotation: np.ndarray, centre: np.ndarray, intrinsic_px: np.ndarray
) -> dict[str, np.ndarray]:
    """3DHP-format view of world poses: data_3d (N, 17, 3) mm camera coords, data_2d px."""
    cam = (to_3dhp17(positions_32) - centre) @ rotation.T
    uv = project_to_2d(cam, intrinsic_px.astype(np.float64))
    return {"data_3d": (cam * 1000.0).astype(np.float32), "data_2d": uv.astype(np.float32)}


def synthesize_3dhp_train(cfg) -> dict[str, list[dict[int, dict[str, np.ndarray]]]]:
    """``{"S{s} Seq{q}": [{camera: {"data_3d", "data_2d"}}]}`` for the configured subjects."""
    intrinsic, _, _ = mpi3dhp_test_intrinsic_px("TS1")
    data: dict[str, list[dict[int, dict[str, np.ndarray]]]] = {}
    for s in range(1, cfg.mpi3dhp_subjects + 1):
        for q in range(1, cfg.mpi3dhp_sequences + 1):
            key = f"S{s} Seq{q}"
            plan = TRAIN_PLANS[(q - 1) % len(TRAIN_PLANS)]
            pos, _ = activity_motion(
                stream(cfg.seed, "3dhp-motion", key), stream(cfg.seed, "3dhp-body", s), plan,
                cfg.frames,
            )
            rig = stream(cfg.seed, "3dhp-rig", key)
            cams = {}
            for c in cfg.mpi3dhp_cameras:
                azimuth = 2 * np.pi * c / 14 + rig.normal(0.0, 0.1)
                height = 0.6 + 0.9 * (c % 3) + rig.normal(0.0, 0.1)
                rotation, centre = place_camera(rig, azimuth, rig.uniform(3.5, 4.5), height)
                cams[int(c)] = view(pos, rotation, centre, intrinsic)
            data[key] = [cams]
    return data


def synthesize_3dhp_test(cfg) -> dict[str, dict[str, np.ndarray]]:
    """``{"TS<i>": {"data_3d", "data_2d", "valid", "activity"}}`` for the configured sequences."""
    data: dict[str, dict[str, np.ndarray]] = {}
    for ts in cfg.mpi3dhp_test_sequences:
        n = cfg.frames
        rng = stream(cfg.seed, "3dhp-test", ts)
        pos, activity = activity_motion(rng, stream(cfg.seed, "3dhp-test-body", ts),
                                         TEST_PLANS[ts], n)
        intrinsic, _, _ = mpi3dhp_test_intrinsic_px(ts)
        outdoor = ts in ("TS5", "TS6")
        rotation, centre = place_camera(
            rng, rng.uniform(0, 2 * np.pi), rng.uniform(5.0, 6.0) if outdoor else
            rng.uniform(3.8, 4.4), rng.uniform(1.0, 1.4),
        )
        seq = view(pos, rotation, centre, intrinsic)
        valid = np.ones(n, dtype=np.int8)
        valid[: int(rng.integers(0, max(1, n // 10)))] = 0  # tracking not yet started
        gap = max(1, n // 12)
        start = int(rng.integers(0, max(1, n - gap)))
        valid[start : start + gap] = 0  # a stretch the annotators rejected
        seq["valid"] = valid
        seq["activity"] = activity
        data[ts] = seq
    return data


__all__ = [
    "ACTIVITY_RECIPES",
    "activity_motion",
    "look_at",
    "place_camera",
    "segment_weights",
    "synthesize_3dhp_test",
    "synthesize_3dhp_train",
    "to_3dhp17",
    "view",
]


def write_synthetic_3dhp(
    out_dir: str | Path, cfg: SyntheticConfig
) -> dict[str, Path]:
    """Write ``data_train_3dhp_ori.npz`` and ``data_test_3dhp_ori.npz`` (layout: docs/model.md
    "MPI-INF-3DHP files").

    Returns ``{"train": path, "test": path}``.
    """
    out_dir = Path(out_dir)
    paths = {
        "train": out_dir / "data_train_3dhp_ori.npz",
        "test": out_dir / "data_test_3dhp_ori.npz",
    }
    mpi3dhp_files.save_3dhp_train(paths["train"], synthesize_3dhp_train(cfg))
    mpi3dhp_files.save_3dhp_test(paths["test"], synthesize_3dhp_test(cfg))
    return paths

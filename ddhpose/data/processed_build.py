"""Builders of processed splits (:mod:`ddhpose.data.processed`) from the datasets' own dicts.

- :func:`h36m_to_processed`: VideoPose3D ``positions_3d`` / ``positions_2d`` dicts (docs/model.md
  "Human3.6M files");
- :func:`mpi3dhp_to_processed`: D3DP ``data_{train,test}_3dhp_ori`` dicts (docs/model.md
  "MPI-INF-3DHP files").

Everything is vectorised per sequence (no per-frame Python loops).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ddhpose.camera import (
    H36M_EXTRINSICS,
    h36m_camera,
    mpi3dhp_test_intrinsic_px,
    normalize_screen_coordinates,
    normalized_intrinsic,
    world_to_camera,
)
from ddhpose.data.h36m import match_positions
from ddhpose.data.mpi3dhp import validate_3dhp_test, validate_3dhp_train
from ddhpose.data.processed import ProcessedSplit, concat_sequences, parse_names
from ddhpose.errors import DataError
from ddhpose.skeleton import H36M32_KEPT, get_skeleton


def normalize_px(kp_px: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels (..., 2) -> float32 normalised screen coordinates (rounded as the reference does)."""
    return normalize_screen_coordinates(np.asarray(kp_px, dtype=np.float32), int(w), int(h))


def _relative(pos: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, J, 3) camera-space -> (root-relative pose with the root exactly 0, root trajectory)."""
    rel = pos - pos[:, root : root + 1]
    rel[:, root] = 0.0
    return rel, pos[:, root].copy()


def h36m_to_processed(
    positions_3d: dict[str, dict[str, np.ndarray]],
    positions_2d: dict[str, dict[str, list[np.ndarray]]],
    subjects: str | Iterable[str],
    actions: str | Iterable[str] | None = "*",
) -> ProcessedSplit:
    """Human3.6M VideoPose3D dicts -> a processed split (docs/model.md "Human3.6M files").

    Args:
        positions_3d: ``{subject: {action: (N, 32|17, 3)}}`` world metres.
        positions_2d: ``{subject: {action: [4 x (N', 17, 2)]}}`` pixels, N' >= N (cut to N).
        subjects: subjects in output order (e.g. ``"S9,S11"``).
        actions: action-name prefixes (``"*"`` = all).
    Sequences follow the reference's order: subjects as given, actions in the 2D file's order,
    cameras 0..3. 3D is reduced to 17 joints, moved to each camera's frame (metres), split into
    the root trajectory and a root-relative pose; 2D is normalised with the camera's resolution.
    """
    subj = parse_names(subjects)
    if not subj:
        raise DataError(None, "h36m_to_processed needs at least one subject")
    for s in subj:
        if s not in positions_3d or s not in positions_2d:
            raise DataError(None, f"subject {s} is missing from the 3D or the 2D data")
        if s not in H36M_EXTRINSICS:
            raise DataError(None, f"no camera extrinsics for subject {s}")
    matched = match_positions({s: positions_3d[s] for s in subj},
                              {s: positions_2d[s] for s in subj})
    prefixes = parse_names(actions)
    parts: list[dict[str, Any]] = []
    for s in subj:
        cams = [h36m_camera(s, c) for c in range(4)]
        for action, kps in matched[s].items():
            if prefixes is not None and not action.startswith(tuple(prefixes)):
                continue
            world = np.asarray(positions_3d[s][action], dtype=np.float32)
            if world.shape[1] == 32:
                world = world[:, list(H36M32_KEPT)]
            for c, cam in enumerate(cams):
                # The reference transforms with torch in float32.
                pos = world_to_camera(torch.from_numpy(world), torch.from_numpy(cam.orientation),
                                      torch.from_numpy(cam.translation)).numpy()
                rel, traj = _relative(pos, 0)
                n = len(rel)
                parts.append({
                    "pose_2d": normalize_px(kps[c], cam.res_w, cam.res_h), "pose_3d": rel,
                    "traj": traj, "valid": np.ones(n, bool), "activity": np.zeros(n, np.int16),
                    "seq_name": f"{s}/{action}/cam{c}", "seq_subject": s, "seq_action": action,
                    "seq_camera": c, "intrinsic": cam.intrinsic,
                    "intrinsic_px": cam.intrinsic_px, "res": (cam.res_w, cam.res_h),
                })
    if not parts:
        raise DataError(None, f"no Human3.6M sequences match subjects={subj} actions={prefixes}")
    return concat_sequences(parts, "h36m", "h36m17")


# TS1-TS4 pinhole camera: also stored for the 3DHP training sequences, whose true intrinsics the
# D3DP files do not carry (only the image size 2048 x 2048 is known).
MPI3DHP_TRAIN_CAMERA_FROM = "TS1"


def _mpi3dhp_part(name: str, subject: str, action: str, camera: int, seq: dict[str, Any],
                  cam_px: np.ndarray, w: int, h: int) -> dict[str, Any]:
    root = get_skeleton("3dhp17").root
    mm = np.asarray(seq["data_3d"], dtype=np.float32)
    rel_mm, traj_mm = _relative(mm, root)  # root-relative in mm first, as the reference
    n = len(mm)
    valid = np.asarray(seq["valid"]) != 0 if "valid" in seq else np.ones(n, bool)
    activity = seq.get("activity")
    return {
        "pose_2d": normalize_px(seq["data_2d"], w, h),
        "pose_3d": rel_mm / np.float32(1000), "traj": traj_mm / np.float32(1000),
        "valid": valid,
        "activity": np.zeros(n, np.int16) if activity is None else np.asarray(activity, np.int16),
        "seq_name": name, "seq_subject": subject, "seq_action": action, "seq_camera": camera,
        "intrinsic": normalized_intrinsic((cam_px[0], cam_px[1]), (cam_px[2], cam_px[3]),
                                          (0.0, 0.0, 0.0), (0.0, 0.0), w, h),
        "intrinsic_px": cam_px, "res": (w, h),
    }


def mpi3dhp_to_processed(data: dict[str, Any], kind: str) -> ProcessedSplit:
    """MPI-INF-3DHP D3DP dicts (docs/model.md "MPI-INF-3DHP files") -> a processed split.

    ``kind="train"``: ``{"S{s} Seq{q}": [{camera: {"data_3d" (N,17,3) mm, "data_2d" (N,17,2)
    px}}]}``; sequence ``"S1/Seq1/cam0"``, subject ``"S1"``, action ``"Seq1"``; images 2048 x 2048;
    the camera stored is the TS1-4 pinhole (true training intrinsics unknown). ``kind="test"``:
    ``{"TS1".."TS6": {"data_3d", "data_2d", "valid", optional "activity"}}``; name, subject and
    action are all ``"TS<i>"``, camera 0, intrinsics from
    :func:`ddhpose.camera.mpi3dhp_test_intrinsic_px`. 3D becomes metres, root (joint 14) relative.
    """
    parts: list[dict[str, Any]] = []
    if kind == "train":
        cam_px, w, h = mpi3dhp_test_intrinsic_px(MPI3DHP_TRAIN_CAMERA_FROM)
        for key, entry in validate_3dhp_train(data).items():
            subject, action = key.split(" ")
            for cam, seq in entry[0].items():
                try:
                    c = int(cam)
                except (TypeError, ValueError) as exc:
                    raise DataError(None, f"{key}: camera key {cam!r} is not an integer") from exc
                parts.append(_mpi3dhp_part(f"{subject}/{action}/cam{c}", subject, action, c, seq,
                                           cam_px, w, h))
    elif kind == "test":
        for ts, seq in validate_3dhp_test(data).items():
            cam_px, w, h = mpi3dhp_test_intrinsic_px(ts)
            parts.append(_mpi3dhp_part(ts, ts, ts, 0, seq, cam_px, w, h))
    else:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    return concat_sequences(parts, "3dhp", "3dhp17")

__all__ = ["MPI3DHP_TRAIN_CAMERA_FROM", "h36m_to_processed", "mpi3dhp_to_processed", "normalize_px"]

"""A PNG preview of the synthetic data: 3D skeletons of several actions and 2D camera views."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddhpose.camera import h36m_camera
from ddhpose.io import atomic_path
from ddhpose.skeleton import H36M17, MPI3DHP17, Skeleton, reduce_h36m32
from ddhpose.synthetic.actions import generate_motion
from ddhpose.synthetic.body import sample_body
from ddhpose.synthetic.config import SyntheticConfig, stream
from ddhpose.synthetic.h36m import detect, project_h36m
from ddhpose.synthetic.motion import sample_style
from ddhpose.synthetic.mpi3dhp import synthesize_3dhp_test

PREVIEW_ACTIONS = ("Walking", "Sitting", "Phoning", "Greeting", "SittingDown", "Posing")
_LEFT, _RIGHT, _MID = "tab:blue", "tab:red", "0.3"


def _colour(skel: Skeleton, child: int) -> str:
    if child in skel.joints_left:
        return _LEFT
    return _RIGHT if child in skel.joints_right else _MID


def _draw_3d(ax, pose: np.ndarray, alpha: float) -> None:
    for parent, child in H36M17.bones:
        seg = pose[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=_colour(H36M17, child), alpha=alpha, lw=2)


def _draw_2d(ax, pose: np.ndarray, skel: Skeleton, style: str = "-", alpha: float = 1.0) -> None:
    for parent, child in skel.bones:
        seg = pose[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], style, color=_colour(skel, child), alpha=alpha, lw=1.5)


def _facing_front(pose: np.ndarray) -> np.ndarray:
    """Move a (17, 3) pose's pelvis above the origin and turn it to face -y (towards the viewer)."""
    hips = pose[1] - pose[4]  # left -> right hip
    yaw = np.arctan2(hips[1], hips[0])
    c, s = np.cos(np.pi - yaw), np.sin(np.pi - yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (pose - np.array([pose[0, 0], pose[0, 1], 0.0])) @ rot.T


def render_preview(path_png: str | Path, cfg: SyntheticConfig) -> Path:
    """Write the preview PNG (e.g. ``reports/synthetic_preview.png``): top row 3D poses (3
    instants each), bottom row 2D views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    n = cfg.frames
    body = sample_body(stream(cfg.seed, "h36m-body", "S1"))
    style = sample_style(stream(cfg.seed, "h36m-style", "S1"))
    fig = plt.figure(figsize=(3.4 * len(PREVIEW_ACTIONS), 9.0))
    instants = np.linspace(0, n - 1, 3).astype(int)
    walking = None
    for i, action in enumerate(PREVIEW_ACTIONS):
        pos = reduce_h36m32(generate_motion(
            action, body, style, stream(cfg.seed, "h36m-motion", "S1", f"{action} 1"), n))
        walking = pos if action == "Walking" else walking
        ax = fig.add_subplot(2, len(PREVIEW_ACTIONS), i + 1, projection="3d")
        for k, f in enumerate(instants):
            _draw_3d(ax, _facing_front(pos[f]) + np.array([0.9 * (k - 1), 0.0, 0.0]), alpha=0.9)
        ax.set_xlim(-1.4, 1.4)
        ax.set_ylim(-1.4, 1.4)
        ax.set_zlim(0, 2.0)
        ax.set_box_aspect((2.8, 2.8, 2.0))
        ax.view_init(elev=12, azim=-70)
        ax.set_title(f"{action} (S1), frames {', '.join(map(str, instants))}\n"
                     "(root moved to the origin, turned to face -y)", fontsize=8)
        ax.tick_params(labelsize=6)

    assert walking is not None
    mocap = generate_motion("Walking", body, style,
                            stream(cfg.seed, "h36m-motion", "S1", "Walking 1"), n)
    views = project_h36m(mocap.astype(np.float32), "S1")
    for j, cam_idx in enumerate((0, 1, 3)):
        cam = h36m_camera("S1", cam_idx)
        det = detect(views[cam_idx], cfg, stream(cfg.seed, "h36m-detect", "S1", "Walking 1",
                                                 cam_idx))
        ax = fig.add_subplot(2, len(PREVIEW_ACTIONS), len(PREVIEW_ACTIONS) + 1 + j)
        for f in instants:
            _draw_2d(ax, views[cam_idx][f], H36M17)
            ax.plot(det[f, :, 0], det[f, :, 1], "k.", ms=3)
        ax.plot(views[cam_idx][:, 0, 0], views[cam_idx][:, 0, 1], color="0.6", lw=0.8)
        ax.set_xlim(0, cam.res_w)
        ax.set_ylim(cam.res_h, 0)
        ax.set_aspect("equal")
        ax.set_title(f"Walking 1, camera {cam.id}\nGT (lines), detections (dots), px", fontsize=8)
        ax.tick_params(labelsize=6)

    test = synthesize_3dhp_test(type(cfg)(**{**cfg.__dict__, "mpi3dhp_test_sequences": ("TS1",
                                                                                      "TS5")}))
    for j, (ts, size) in enumerate((("TS1", (2048, 2048)), ("TS5", (1920, 1080)))):
        seq = test[ts]
        ax = fig.add_subplot(2, len(PREVIEW_ACTIONS), len(PREVIEW_ACTIONS) + 4 + j)
        for f in np.linspace(0, n - 1, 4).astype(int):
            _draw_2d(ax, seq["data_2d"][f], MPI3DHP17)
        ax.set_xlim(0, size[0])
        ax.set_ylim(size[1], 0)
        ax.set_aspect("equal")
        acts = sorted(set(seq["activity"].tolist()))
        ax.set_title(f"3DHP {ts} ({size[0]}x{size[1]} px)\nactivities {acts}", fontsize=8)
        ax.tick_params(labelsize=6)

    ax = fig.add_subplot(2, len(PREVIEW_ACTIONS), 2 * len(PREVIEW_ACTIONS))
    t = np.arange(n) / 50.0
    ax.plot(t, walking[:, 0, 2], label="pelvis z (walking)")
    ax.plot(t, walking[:, 3, 2], label="right ankle z")
    ax.plot(t, walking[:, 6, 2], label="left ankle z")
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("height (m)", fontsize=7)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path_png)

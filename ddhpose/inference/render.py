"""Render a 3D pose sequence beside its 2D input with matplotlib (Agg backend, no display).

Output by extension: ``.gif`` (``matplotlib.animation.PillowWriter``, needs only Pillow),
``.mp4`` (ffmpeg; a clear error if it is not on PATH) or ``.png`` (a strip of a few frames).
Poses are camera-space metres (x right, y down, z away from the camera) and are drawn with the
vertical axis up: plot axes (x, z, −y). Left limbs blue, right limbs red, the rest black; extra
hypotheses are faint grey skeletons, a per-joint spread is drawn as translucent markers whose
area grows with the spread, ground truth is green and dashed. Long sequences are subsampled to
``max_frames`` frames (the playback speed is kept). Files are written atomically.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation

from ddhpose.errors import DataError
from ddhpose.io import atomic_path
from ddhpose.skeleton import H36M17, Skeleton

FORMATS = (".gif", ".mp4", ".png")
_MAX_FAINT = 5  # hypotheses drawn per frame


def _bone_colour(skel: Skeleton, child: int) -> str:
    if child in skel.joints_left:
        return "tab:blue"
    if child in skel.joints_right:
        return "tab:red"
    return "black"


def _to_plot(p: np.ndarray) -> np.ndarray:
    """Camera axes (x right, y down, z ahead) -> plot axes (x, z, -y) so that up is up."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def _check_array(name: str, a: Any, tail: tuple[int, ...], frames: int, ndim: int) -> np.ndarray:
    """``a`` as float64 with shape (T, ..., *tail) of ``ndim`` dims, else a ValueError."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] != frames or arr.shape[ndim - len(tail):] != tail:
        want = ", ".join(["T", *(["H"] * (ndim - 1 - len(tail))), *map(str, tail)])
        raise ValueError(f"{name} must be ({want}) with T = {frames}, got {arr.shape}")
    return arr


class _Scene:
    """The figure's artists for one frame (2D axes on the left, 3D axes on the right)."""

    def __init__(self, fig: Any, ax2d: Any, ax3d: Any, data: dict[str, Any], skel: Skeleton):
        self.d, self.skel = data, skel
        self.ax2d, self.ax3d = ax2d, ax3d
        bones = skel.bones
        self.lines2d = ([ax2d.plot([], [], color=_bone_colour(skel, c), lw=2)[0]
                         for _, c in bones] if data["kp"] is not None else [])
        self.lines3d = [ax3d.plot([], [], [], color=_bone_colour(skel, c), lw=2.2)[0]
                        for _, c in bones]
        self.gt3d = ([ax3d.plot([], [], [], color="tab:green", lw=1.4, ls="--")[0]
                      for _ in bones] if data["gt"] is not None else [])
        n_faint = 0 if data["hyp"] is None else min(_MAX_FAINT, data["hyp"].shape[1])
        self.faint = [[ax3d.plot([], [], [], color="0.55", lw=0.8, alpha=0.35)[0] for _ in bones]
                      for _ in range(n_faint)]
        self.spread_art: Any = None
        self._setup_axes()

    def _setup_axes(self) -> None:
        d, ax3d = self.d, self.ax3d
        everything = [d["pose"]] + [a for a in (d["gt"], d["hyp"]) if a is not None]
        r = max(float(np.nanmax(np.abs(a))) for a in everything) * 1.05 + 1e-3
        ax3d.set_xlim(-r, r)
        ax3d.set_ylim(-r, r)
        ax3d.set_zlim(-r, r)
        ax3d.set_box_aspect((1, 1, 1), zoom=1.2)
        ax3d.view_init(elev=12, azim=-75)
        ax3d.set_xlabel("x (m)")
        ax3d.set_ylabel("depth (m)")
        ax3d.set_zlabel("up (m)")
        ax3d.tick_params(labelsize=6)
        if d["kp"] is not None:
            kp = d["kp"]
            lo, hi = np.nanmin(kp, axis=(0, 1)), np.nanmax(kp, axis=(0, 1))
            centre, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2 * 1.15, 1.0)
            self.ax2d.set_xlim(centre[0] - half, centre[0] + half)
            self.ax2d.set_ylim(centre[1] + half, centre[1] - half)  # image v points down
            self.ax2d.set_aspect("equal")
            self.ax2d.set_xlabel("u (px)")
            self.ax2d.set_ylabel("v (px)")
            self.ax2d.tick_params(labelsize=6)
            self.ax2d.set_title("2D input", fontsize=9)

    def _set3d(self, lines: list[Any], pose: np.ndarray) -> None:
        p = _to_plot(pose)
        for line, (a, b) in zip(lines, self.skel.bones, strict=True):
            # arrays, not lists: matplotlib masks a NaN pose (a track's absent frame) on arrays
            line.set_data_3d(p[[a, b], 0], p[[a, b], 1], p[[a, b], 2])

    def draw(self, i: int, label: str) -> list[Any]:
        d = self.d
        if d["kp"] is not None:
            kp = d["kp"][i]
            for line, (a, b) in zip(self.lines2d, self.skel.bones, strict=True):
                line.set_data([kp[a, 0], kp[b, 0]], [kp[a, 1], kp[b, 1]])
        self._set3d(self.lines3d, d["pose"][i])
        if self.gt3d:
            self._set3d(self.gt3d, d["gt"][i])
        for k, lines in enumerate(self.faint):
            self._set3d(lines, d["hyp"][i, k])
        if d["spread"] is not None:
            if self.spread_art is not None:
                self.spread_art.remove()
            p = _to_plot(d["pose"][i])
            size = 20 + 4e4 * d["spread"][i] ** 2  # marker area in pt², spread in metres
            self.spread_art = self.ax3d.scatter(p[:, 0], p[:, 1], p[:, 2], s=size,
                                                color="tab:orange", alpha=0.25, linewidths=0)
        self.ax3d.set_title(f"3D {label}", fontsize=9)
        faint = [ln for lines in self.faint for ln in lines]
        return [*self.lines2d, *self.lines3d, *self.gt3d, *faint]


def _frame_indices(t: int, max_frames: int) -> np.ndarray:
    if t <= max_frames:
        return np.arange(t)
    return np.unique(np.linspace(0, t - 1, max_frames).round().astype(int))


def _with_suffix_file(tmp: Path, suffix: str) -> Path:
    """A sibling of the atomic temporary file that carries the real extension."""
    return tmp.with_name(tmp.name + suffix)


def _save_animation(anim: Any, out: Path, ext: str, fps: float) -> None:
    """Write a matplotlib animation atomically as ``out``: a GIF (Pillow) or an MP4 (ffmpeg,
    libx264), at ``fps`` frames per second."""
    writer: Any = (animation.PillowWriter(fps=fps) if ext == ".gif"
                   else animation.FFMpegWriter(fps=fps, codec="libx264"))
    with atomic_path(out) as tmp:
        named = _with_suffix_file(tmp, ext)  # the writers pick the format by extension
        try:
            anim.save(str(named), writer=writer)
            os.replace(named, tmp)
        finally:
            if named.exists():
                named.unlink()


def _output_path(out_path: str | Path) -> tuple[Path, str]:
    """``(path, lower-case suffix)`` of a render output; DataError for a type it cannot write."""
    out = Path(out_path)
    ext = out.suffix.lower()
    if ext not in FORMATS:
        raise DataError(out, f"unknown output type '{ext}' (expected {', '.join(FORMATS)})")
    if ext == ".mp4" and shutil.which("ffmpeg") is None:
        raise DataError(out, "mp4 output needs ffmpeg, which is not installed (not on PATH); "
                             "write a .gif or .png instead")
    return out, ext


def render_sequence(
    poses_3d: np.ndarray,
    out_path: str | Path,
    keypoints_2d: np.ndarray | None = None,
    hypotheses: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    fps: float = 25,
    skeleton: Skeleton = H36M17,
    title: str | None = None,
    max_frames: int = 150,
    strip_frames: int = 6,
) -> Path:
    """Write an animation (gif/mp4) or a strip of frames (png) of a pose sequence.

    Args:
        poses_3d: (T, J, 3) metres, root-relative, camera axes.
        out_path: ``.gif``, ``.mp4`` or ``.png``.
        keypoints_2d: optional (T, J, 2) pixels, drawn on the left.
        hypotheses: optional (T, H, J, 3) metres, up to 5 drawn faintly.
        spread: optional (T, J) metres, per-joint markers (ignored when hypotheses are given).
        gt: optional (T, J, 3) metres ground truth.
        fps: playback frames per second of the full sequence.
        max_frames: animate at most this many (evenly subsampled) frames.
        strip_frames: frames in a png strip.
    Returns:
        the written path.
    """
    out, ext = _output_path(out_path)
    pose = np.asarray(poses_3d, dtype=np.float64)
    j = skeleton.num_joints
    if pose.ndim != 3 or pose.shape[1:] != (j, 3) or pose.shape[0] < 1:
        raise ValueError(f"poses_3d must be (T, {j}, 3), got {pose.shape}")
    t = pose.shape[0]
    if not (np.isfinite(fps) and fps > 0) or max_frames < 1:
        raise ValueError(f"fps must be > 0 and max_frames >= 1, got {fps}, {max_frames}")
    data = {
        "pose": pose,
        "kp": None if keypoints_2d is None else _check_array("keypoints_2d", keypoints_2d,
                                                              (j, 2), t, 3),
        "hyp": None if hypotheses is None else _check_array("hypotheses", hypotheses,
                                                             (j, 3), t, 4),
        "spread": None if spread is None or hypotheses is not None else _check_array(
            "spread", spread, (j,), t, 2),
        "gt": None if gt is None else _check_array("gt", gt, (j, 3), t, 3),
    }
    if ext == ".png":
        idx = np.unique(np.linspace(0, t - 1, min(strip_frames, t)).round().astype(int))
        return _render_strip(data, out, idx, skeleton, title)
    idx = _frame_indices(t, max_frames)
    return _render_animation(data, out, idx, skeleton, title, fps * len(idx) / t, ext)


def _new_axes(fig: Any, rows: int, cols: int, col: int, with_2d: bool) -> tuple[Any, Any]:
    if with_2d:
        ax2d = fig.add_subplot(rows, cols, col + 1)
        ax3d = fig.add_subplot(rows, cols, cols + col + 1 if rows == 2 else col + 2,
                               projection="3d")
        return ax2d, ax3d
    return None, fig.add_subplot(rows, cols, col + 1, projection="3d")


def _render_strip(data: dict, out: Path, idx: np.ndarray, skel: Skeleton,
                  title: str | None) -> Path:
    with_2d = data["kp"] is not None
    rows, cols = (2 if with_2d else 1), len(idx)
    fig = plt.figure(figsize=(2.6 * cols, 2.9 * rows + 0.4), dpi=100)
    try:
        for c, i in enumerate(idx):
            ax2d, ax3d = _new_axes(fig, rows, cols, c, with_2d)
            scene = _Scene(fig, ax2d, ax3d, data, skel)
            scene.draw(int(i), f"frame {int(i)}")
            if ax2d is not None:
                ax2d.set_title(f"2D frame {int(i)}", fontsize=9)
            if c > 0:  # axis names once, on the first column
                for ax in (ax2d, ax3d):
                    if ax is not None:
                        ax.set_xlabel("")
                        ax.set_ylabel("")
                ax3d.set_zlabel("")
        if title:
            fig.suptitle(title, fontsize=10)
        fig.subplots_adjust(left=0.04, right=0.97, bottom=0.06, top=0.9 if title else 0.95,
                            wspace=0.3, hspace=0.3)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out


def _render_animation(data: dict, out: Path, idx: np.ndarray, skel: Skeleton,
                      title: str | None, fps: float, ext: str) -> Path:
    with_2d = data["kp"] is not None
    fig = plt.figure(figsize=(9.0 if with_2d else 5.0, 4.8), dpi=80)
    try:
        ax2d, ax3d = _new_axes(fig, 1, 2 if with_2d else 1, 0, with_2d)
        scene = _Scene(fig, ax2d, ax3d, data, skel)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.03, 1, 0.96))
        anim = animation.FuncAnimation(
            fig, lambda n: scene.draw(int(idx[n]), f"frame {int(idx[n])}"), frames=len(idx),
            blit=False, interval=1000.0 / fps,
        )
        _save_animation(anim, out, ext, fps)
    finally:
        plt.close(fig)
    return out


def render_tracks(
    tracks: dict[str, dict[str, np.ndarray]],
    out_path: str | Path,
    fps: float = 25,
    title: str | None = None,
    max_frames: int = 150,
    skeleton: Skeleton = H36M17,
) -> Path:
    """Several people side by side, one column per track (2D input above its 3D pose when every
    track has ``keypoints_2d``), on the common frame numbering; a track is empty in the frames
    it does not cover. ``.gif``/``.mp4`` animate the union of the tracks' frames (at most
    ``max_frames``, evenly subsampled); ``.png`` shows its middle frame.

    Args:
        tracks: track id -> {``poses_3d``: (T_i, J, 3) metres, root-relative, camera axes;
            ``frames``: (T_i,) int frame indices; optional ``keypoints_2d``: (T_i, J, 2)
            pixels}.
        out_path: ``.gif``, ``.mp4`` or ``.png``.
        fps: playback frames per second of the full sequence.
    Returns:
        the written path.
    """
    out, ext = _output_path(out_path)
    if not tracks:
        raise ValueError("no track to render")
    if not (np.isfinite(fps) and fps > 0) or max_frames < 1:
        raise ValueError(f"fps must be > 0 and max_frames >= 1, got {fps}, {max_frames}")
    j = skeleton.num_joints
    first = min(int(np.min(t["frames"])) for t in tracks.values())
    last = max(int(np.max(t["frames"])) for t in tracks.values())
    length = last - first + 1
    with_2d = all(t.get("keypoints_2d") is not None for t in tracks.values())
    datas = []
    for tid, t in tracks.items():
        pose = np.asarray(t["poses_3d"], dtype=np.float64)
        rows = np.asarray(t["frames"], dtype=np.int64) - first
        if pose.ndim != 3 or pose.shape[1:] != (j, 3) or rows.shape != pose.shape[:1]:
            raise ValueError(f"track {tid}: poses_3d must be (T, {j}, 3) with T frames, got "
                             f"{pose.shape} and {rows.shape}")
        full = np.full((length, j, 3), np.nan)
        full[rows] = pose
        kp = None
        if with_2d:
            kp = np.full((length, j, 2), np.nan)
            kp[rows] = _check_array("keypoints_2d", t["keypoints_2d"], (j, 2), len(rows), 3)
        datas.append((tid, {"pose": full, "kp": kp, "hyp": None, "spread": None, "gt": None}))
    cols = len(datas)
    rows_n = 2 if with_2d else 1
    if ext == ".png":
        idx = np.array([length // 2])
        fig = plt.figure(figsize=(3.2 * cols, 3.1 * rows_n + 0.4), dpi=100)
    else:
        idx = _frame_indices(length, max_frames)
        fig = plt.figure(figsize=(3.6 * cols, 3.4 * rows_n + 0.4), dpi=80)
    try:
        scenes = []
        for c, (tid, data) in enumerate(datas):
            ax2d, ax3d = _new_axes(fig, rows_n, cols, c, with_2d)
            scenes.append((tid, _Scene(fig, ax2d, ax3d, data, skeleton)))
            if ax2d is not None:
                ax2d.set_title(f"2D track {tid}", fontsize=9)

        def draw(n: int) -> list[Any]:
            arts = []
            for tid, scene in scenes:
                arts += scene.draw(int(idx[n]), f"track {tid}, frame {first + int(idx[n])}")
            return arts

        if title:
            fig.suptitle(title, fontsize=10)
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.06, top=0.88 if title else 0.94,
                            wspace=0.3, hspace=0.3)
        if ext == ".png":
            draw(0)
            with atomic_path(out) as tmp:
                fig.savefig(tmp, format="png")
            return out
        rate = fps * len(idx) / length
        anim = animation.FuncAnimation(fig, draw, frames=len(idx), blit=False,
                                       interval=1000.0 / rate)
        _save_animation(anim, out, ext, rate)
    finally:
        plt.close(fig)
    return out


__all__ = ["FORMATS", "render_sequence", "render_tracks"]

"""`ddhpose.inference.render.render_sequence`: png strip, gif animation, the mp4-without-ffmpeg
error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from ddhpose.errors import DataError
from ddhpose.inference.render import render_sequence


def _sequence(t: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A standing-ish pose sequence (T, 17, 3) metres (y down) and its 2D (T, 17, 2) pixels."""
    rng = np.random.default_rng(seed)
    rest = np.array([
        [0, 0, 0], [-0.13, 0, 0], [-0.13, 0.45, 0], [-0.13, 0.9, 0], [0.13, 0, 0],
        [0.13, 0.45, 0], [0.13, 0.9, 0], [0, -0.23, 0], [0, -0.48, 0], [0, -0.58, -0.05],
        [0, -0.7, 0], [0.16, -0.45, 0], [0.2, -0.2, 0], [0.22, 0.05, 0], [-0.16, -0.45, 0],
        [-0.2, -0.2, 0], [-0.22, 0.05, 0],
    ])
    poses = rest + rng.normal(0, 0.02, size=(t, 17, 3))
    poses -= poses[:, :1]
    kp = 1000 * poses[..., :2] / (poses[..., 2:] + 4.0) + [320, 240]
    return poses, kp


def test_png_strip(tmp_path):
    poses, kp = _sequence()
    hyp = poses[:, None] + np.random.default_rng(1).normal(0, 0.03, size=(6, 3, 17, 3))
    out = render_sequence(poses, tmp_path / "a.png", keypoints_2d=kp, hypotheses=hyp, gt=poses,
                          title="test")
    assert out.stat().st_size > 1000
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height  # a strip
    # no 2D input, spread markers only
    out = render_sequence(poses, tmp_path / "b.png", spread=np.full((6, 17), 0.05))
    assert out.stat().st_size > 1000


def test_gif_animation(tmp_path):
    poses, kp = _sequence(8)
    out = render_sequence(poses, tmp_path / "a.gif", keypoints_2d=kp,
                          spread=np.full((8, 17), 0.03), fps=10, max_frames=4)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]  # no temporary left


def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no ffmpeg on this PATH
    assert shutil.which("ffmpeg") is None
    poses, _ = _sequence(3)
    with pytest.raises(DataError, match=r"a\.mp4: mp4 output needs ffmpeg"):
        render_sequence(poses, tmp_path / "a.mp4")
    assert not (tmp_path / "a.mp4").exists()


def test_bad_arguments(tmp_path):
    poses, kp = _sequence(3)
    with pytest.raises(DataError, match=r"a\.avi: unknown output type"):
        render_sequence(poses, tmp_path / "a.avi")
    with pytest.raises(ValueError, match="keypoints_2d must be"):
        render_sequence(poses, tmp_path / "a.png", keypoints_2d=kp[:2])
    with pytest.raises(ValueError, match="poses_3d must be"):
        render_sequence(poses[:, :16], tmp_path / "a.png")

"""``ddhpose infer``'s quality outputs (ddhpose/commands/infer_quality.py), through the real
command on real files: ``uncertainty`` is ``spread`` (0 with H = 1), ``jitter`` is the mean
acceleration magnitude computed by hand, ``--smooth`` is off by default, filters the poses with
``smooth_poses`` and lowers the jitter, its default window is ``eval.smooth_window`` of
params.yaml, and with several tracks every one of these is per track."""

from __future__ import annotations

import json

import numpy as np
import pytest
from demo_config import tiny_checkpoint
from layout_keypoints import random_walk

from ddhpose.cli import main
from ddhpose.config.yamlfile import read_yaml
from ddhpose.evaluation.temporal import smooth_poses
from ddhpose.keypoints import save_keypoints_json
from ddhpose.project import REPO

F = 9
SIZE = (640.0, 480.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), F)


def _coco(t: int, seed: int, x0: float) -> np.ndarray:
    return random_walk(t, seed, centre=(x0, 240.0), spread=60.0, step=3.0, confidence=0.9)


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("kp") / "walk.json"
    save_keypoints_json(path, _coco(30, 0, 320.0), "coco17", SIZE)
    return str(path)


def _infer(ckpt: str, keypoints: str, out, *extra: str) -> dict:
    assert main(["infer", "--checkpoint", ckpt, "--keypoints", keypoints, "--out", str(out),
                 *extra]) == 0
    return dict(np.load(out))


def _jitter_by_hand(poses: np.ndarray) -> float:
    """mean over t = 1..T-2 and joints of |x[t+1] - 2 x[t] + x[t-1]| (metres/frame²)."""
    total, count = 0.0, 0
    for t in range(1, len(poses) - 1):
        for j in range(poses.shape[1]):
            acc = poses[t + 1, j].astype(np.float64) - 2 * poses[t, j] + poses[t - 1, j]
            total += float(np.sqrt(np.sum(acc ** 2)))
            count += 1
    return total / count


def test_uncertainty_is_spread_and_jitter_is_the_mean_acceleration(tmp_path, ckpt, walk,
                                                                   capsys):
    z = _infer(ckpt, walk, tmp_path / "h3.npz", "--hypotheses", "3")
    assert z["uncertainty"].shape == (30, 17) and z["uncertainty"].dtype == np.float32
    np.testing.assert_array_equal(z["uncertainty"], z["spread"])
    assert z["uncertainty"][:, 1:].min() > 0  # three hypotheses differ
    assert float(z["jitter"]) == pytest.approx(_jitter_by_hand(z["poses_3d"]), rel=1e-5)
    assert float(z["jitter"]) > 0
    assert int(z["smooth_window"]) == 0 and "jitter_before_smooth" not in z  # off by default
    line = capsys.readouterr().out
    assert f"jitter {1000 * float(z['jitter']):.2f} mm/frame²" in line, line
    doc = json.loads((tmp_path / "h3.json").read_text())
    assert doc["jitter"] == pytest.approx(float(z["jitter"]))
    one = _infer(ckpt, walk, tmp_path / "h1.npz")  # H = 1: no spread
    np.testing.assert_array_equal(one["uncertainty"], 0.0)


def test_smooth_filters_the_poses_and_lowers_the_jitter(tmp_path, ckpt, walk, capsys):
    raw = _infer(ckpt, walk, tmp_path / "raw.npz", "--hypotheses", "2")
    capsys.readouterr()
    sm = _infer(ckpt, walk, tmp_path / "sm.npz", "--hypotheses", "2", "--smooth", "7")
    line = capsys.readouterr().out
    assert int(sm["smooth_window"]) == 7
    np.testing.assert_allclose(sm["poses_3d"], smooth_poses(raw["poses_3d"], 7), atol=1e-6)
    np.testing.assert_array_equal(sm["poses_3d"][:, 0], 0.0)  # still root-relative
    assert float(sm["jitter_before_smooth"]) == pytest.approx(float(raw["jitter"]), rel=1e-6)
    assert float(sm["jitter"]) == pytest.approx(_jitter_by_hand(sm["poses_3d"]), rel=1e-5)
    assert float(sm["jitter"]) < 0.5 * float(raw["jitter"])
    np.testing.assert_array_equal(sm["uncertainty"], raw["uncertainty"])  # not filtered
    assert "-> " in line and "(--smooth 7)" in line, line


def test_smooth_without_a_window_takes_eval_smooth_window(tmp_path, ckpt, walk, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("eval:\n  smooth_window: 5\n")
    monkeypatch.setenv("DDHPOSE_ROOT", str(project))
    z = _infer(ckpt, walk, tmp_path / "a.npz", "--smooth")
    assert int(z["smooth_window"]) == 5
    # no params.yaml in the project: the checkout's
    (project / "params.yaml").unlink()
    z = _infer(ckpt, walk, tmp_path / "b.npz", "--smooth")
    assert int(z["smooth_window"]) == read_yaml(REPO / "params.yaml")["eval"]["smooth_window"]


@pytest.mark.parametrize(("value", "needle"), [
    ("4", "--smooth must be an odd number of frames >= 3, got 4"),
    ("1", "--smooth must be an odd number of frames >= 3, got 1"),
])
def test_a_bad_window_is_one_line(tmp_path, ckpt, walk, capsys, value, needle):
    rc = main(["infer", "--checkpoint", ckpt, "--keypoints", walk, "--out",
               str(tmp_path / "x.npz"), "--smooth", value])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "x.npz").exists()


def test_a_params_file_whose_window_is_off_is_one_line(tmp_path, ckpt, walk, capsys,
                                                        monkeypatch):
    (tmp_path / "params.yaml").write_text("eval:\n  smooth_window: 0\n")
    monkeypatch.setenv("DDHPOSE_ROOT", str(tmp_path))
    rc = main(["infer", "--checkpoint", ckpt, "--keypoints", walk, "--out",
               str(tmp_path / "x.npz"), "--smooth"])
    err = capsys.readouterr().err
    assert rc == 2 and "eval.smooth_window" in err and "params.yaml" in err, err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


def test_per_track_uncertainty_and_jitter(tmp_path, ckpt, capsys):
    doc = {"layout": "coco17", "image_size": list(SIZE), "tracks": [
        {"id": "a", "keypoints": _coco(20, 1, 200.0).tolist()},
        {"id": "b", "start": 4, "keypoints": _coco(14, 2, 440.0).tolist()},
    ]}
    path = tmp_path / "people.json"
    path.write_text(json.dumps(doc))
    z = _infer(ckpt, str(path), tmp_path / "two.npz", "--hypotheses", "2", "--smooth", "5")
    line = capsys.readouterr().out
    assert "uncertainty" not in z and "jitter" not in z  # per track only
    assert int(z["smooth_window"]) == 5
    for tid, t in (("a", 20), ("b", 14)):
        unc = z[f"track_{tid}_uncertainty"]
        assert unc.shape == (t, 17)
        np.testing.assert_array_equal(unc, z[f"track_{tid}_spread"])
        jit = float(z[f"track_{tid}_jitter"])
        assert jit == pytest.approx(_jitter_by_hand(z[f"track_{tid}_poses_3d"]), rel=1e-5)
        assert jit < float(z[f"track_{tid}_jitter_before_smooth"])
        assert f"{tid}: {1000 * float(z[f'track_{tid}_jitter_before_smooth']):.2f} -> " \
               f"{1000 * jit:.2f}" in line, line
    assert "jitter per track" in line, line


def test_smooth_with_stream_is_one_line(tmp_path, ckpt, walk, capsys):
    rc = main(["infer", "--checkpoint", ckpt, "--stream", "--keypoints", walk, "--smooth", "5"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "--smooth" in lines[0] and "--stream" in lines[0], err

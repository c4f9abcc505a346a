"""`ddhpose.inference.infer` on a tiny random-initialised model: windows, blending, root, j_agg,
CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from demo_config import tiny_model
from layout_keypoints import random_walk

from ddhpose.camera import normalize_screen_coordinates, project_to_2d_linear
from ddhpose.cli import main
from ddhpose.inference.infer import (
    blend_weights,
    blend_windows,
    default_intrinsic,
    estimate_root_translation,
    infer,
    window_starts,
)
from ddhpose.keypoints import save_keypoints_json
from ddhpose.model.checkpoint import save_checkpoint
from ddhpose.model.ddhpose import DDHPose

F = 9
SIZE = (640.0, 480.0)


@pytest.fixture(scope="module")
def model() -> DDHPose:
    return tiny_model(F)


def _keypoints(t: int, seed: int = 0) -> np.ndarray:
    return random_walk(t, seed)


def _direct(model: DDHPose, clip_px: np.ndarray, seed: int, h: int, k: int) -> np.ndarray:
    """The sampler on one (F, 17, 2) clip: last step, root zeroed, (H, F, 17, 3) metres."""
    x = normalize_screen_coordinates(torch.from_numpy(clip_px.astype(np.float32)), *SIZE)
    out = model.sample(x[None], hypotheses=h, steps=k,
                       generator=torch.Generator().manual_seed(seed))[0, -1].numpy()
    return out - out[..., :1, :]


def test_window_layout_and_weights():
    assert window_starts(9, 9) == [0]
    assert window_starts(14, 9) == [0, 4, 5]
    assert window_starts(17, 9) == [0, 4, 8]
    assert window_starts(20, 9, stride=9) == [0, 9, 11]
    np.testing.assert_array_equal(blend_weights(5), [1, 2, 3, 2, 1])
    vals = np.stack([np.full((9, 2), 1.0), np.full((9, 2), 3.0), np.full((9, 2), 5.0)])
    out = blend_windows(vals, [0, 4, 5], 14)
    np.testing.assert_allclose(out[:4], 1.0)  # one window only
    w = blend_weights(9)
    # frame 6: window 0 at i=6, window 1 at i=2, window 2 at i=1
    expect = (1 * w[6] + 3 * w[2] + 5 * w[1]) / (w[6] + w[2] + w[1])
    np.testing.assert_allclose(out[6], expect)
    np.testing.assert_allclose(out[13], 5.0)


@pytest.mark.parametrize("t", [4, F, 14])
def test_any_length_shapes_units_root(model, t):
    kp = _keypoints(t)
    res = infer(model, kp, SIZE, hypotheses=2, steps=2, batch_windows=1,
                generator=torch.Generator().manual_seed(3))
    assert res.poses_3d.shape == (t, 17, 3) and res.poses_3d.dtype == np.float32
    assert res.hypotheses.shape == (t, 2, 17, 3) and res.spread.shape == (t, 17)
    assert np.all(res.poses_3d[:, 0] == 0) and np.all(res.hypotheses[:, :, 0] == 0)
    assert np.all(np.isfinite(res.poses_3d)) and np.all(res.spread >= 0)
    # metres: inside the sampler's pose clamp (1.1 m) on both sides of the root
    assert np.abs(res.poses_3d).max() <= 2.2 + 1e-6
    np.testing.assert_allclose(res.poses_3d, res.hypotheses.mean(axis=1), atol=1e-6)
    # the first window alone covers the first frames: exactly the sampler's output there
    padded = np.concatenate([kp, np.repeat(kp[-1:], max(0, F - t), axis=0)])
    direct = _direct(model, padded[:F], seed=3, h=2, k=2)
    only_first = min(t, 4) if t > F else t  # stride 4: frames 0..3 are in window 0 only
    np.testing.assert_allclose(res.hypotheses[:only_first], direct.transpose(1, 0, 2, 3)[
        :only_first], atol=1e-6)
    np.testing.assert_allclose(res.poses_3d[:only_first], direct.mean(0)[:only_first], atol=1e-6)
    expected_spread = np.linalg.norm(direct.std(0), axis=-1)[:only_first]
    np.testing.assert_allclose(res.spread[:only_first], expected_spread, atol=1e-6)


def test_last_window_alone_at_the_end(model):
    # T = 17, stride 8: windows [0, 9) and [8, 17); frames 9..16 belong to the last one only.
    kp = _keypoints(17, seed=1)
    res = infer(model, kp, SIZE, hypotheses=1, steps=1, batch_windows=1, stride=8,
                generator=torch.Generator().manual_seed(5))
    assert res.windows == [(0, 9), (8, 17)]
    gen = torch.Generator().manual_seed(5)
    x = normalize_screen_coordinates(torch.from_numpy(kp.astype(np.float32)), *SIZE)
    model.sample(x[None, :9], generator=gen)  # consume the first window's draws
    last = model.sample(x[None, 8:], generator=gen)[0, -1, 0].numpy()
    np.testing.assert_allclose(res.poses_3d[9:], (last - last[:, :1])[1:], atol=1e-6)


def test_root_translation_least_squares():
    rng = np.random.default_rng(0)
    poses = rng.normal(0, 0.3, size=(5, 17, 3))
    poses -= poses[:, :1]
    t_true = np.stack([rng.uniform(-0.5, 0.5, 5), rng.uniform(-0.3, 0.3, 5),
                       rng.uniform(3, 6, 5)], axis=-1)
    cam = np.array([1100.0, 1050.0, 512.0, 500.0, 0, 0, 0, 0, 0])
    uv = project_to_2d_linear(poses + t_true[:, None], cam)
    np.testing.assert_allclose(estimate_root_translation(poses, uv, cam), t_true, atol=1e-8)
    np.testing.assert_allclose(estimate_root_translation(poses, uv, cam[:4]), t_true, atol=1e-8)
    noisy = uv + rng.normal(0, 0.5, uv.shape)
    np.testing.assert_allclose(estimate_root_translation(poses, noisy, cam), t_true, atol=0.1)


def test_default_intrinsic():
    np.testing.assert_allclose(default_intrinsic((1000, 800)), [1200, 1200, 500, 400, 0, 0, 0,
                                                                0, 0])
    assert default_intrinsic((1000, 800), focal=900)[0] == 900


def test_j_agg_picks_hypotheses(model):
    kp = _keypoints(6, seed=2)
    res = infer(model, kp, SIZE, hypotheses=3, steps=1, aggregate="j_agg",
                generator=torch.Generator().manual_seed(0))
    assert res.poses_3d.shape == (6, 17, 3) and res.root_translation.shape == (6, 3)
    assert np.all(res.root_translation[:, 2] > 0) and res.intrinsic_px.shape == (9,)
    # one window covers every frame: each joint is one of the hypotheses
    diff = np.abs(res.hypotheses - res.poses_3d[:, None]).max(axis=-1)  # (T, H, J)
    assert np.all(diff.min(axis=1) < 1e-6)
    with pytest.raises(ValueError, match="oracle"):
        infer(model, kp, SIZE, aggregate="j_best_oracle")


def test_bad_inputs(model):
    with pytest.raises(ValueError, match=r"\(T, 17, 2\)"):
        infer(model, np.zeros((5, 16, 2)), SIZE)
    with pytest.raises(ValueError, match="NaN"):
        infer(model, np.full((5, 17, 2), np.nan), SIZE)


def test_cli_infer_and_render(tmp_path, model, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model)
    kp = np.concatenate([_keypoints(12, seed=4), np.ones((12, 17, 1))], axis=-1)
    kp[3, 9, 2] = 0.0  # one missing COCO left wrist
    save_keypoints_json(tmp_path / "kp.json", kp, "coco17", SIZE)
    out = tmp_path / "out" / "pred.npz"
    rc = main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(tmp_path / "kp.json"),
               "--out", str(out), "--hypotheses", "2", "--steps", "1", "--save-hypotheses",
               "--aggregate", "j_agg", "--focal", "700", "--seed", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "12 frames" in captured.out and "1 keypoint(s) interpolated" in captured.out
    assert captured.err.count("warning:") == 1
    with np.load(out) as z:
        assert z["poses_3d"].shape == (12, 17, 3) and str(z["layout"]) == "h36m17"
        assert z["hypotheses"].shape == (12, 2, 17, 3) and z["spread"].shape == (12, 17)
        assert np.all(z["poses_3d"][:, 0] == 0) and z["intrinsic_px"][0] == 700
        poses = z["poses_3d"]
    doc = json.loads(out.with_suffix(".json").read_text())
    np.testing.assert_allclose(np.array(doc["poses_3d"]), poses, atol=1e-6)
    assert doc["aggregate"] == "j_agg" and doc["filled"] == 1
    png = tmp_path / "pred.png"
    assert main(["render", str(out), "--out", str(png), "--keypoints",
                 str(tmp_path / "kp.json")]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    # the same run in bfloat16: close to, not equal to, the float32 poses
    out16 = tmp_path / "out" / "pred16.npz"
    assert main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(tmp_path / "kp.json"),
                 "--out", str(out16), "--hypotheses", "2", "--steps", "1", "--aggregate",
                 "j_agg", "--focal", "700", "--seed", "1", "--dtype", "bfloat16"]) == 0
    with np.load(out16) as z:
        dev = np.abs(z["poses_3d"] - poses).max()
        assert str(z["precision"]) == "bfloat16-weights"
    assert 0.0 < dev < 0.05, dev
    # float16 and auto (bfloat16 on CPUs with bf16 units, else float32) are accepted too
    from ddhpose.model.fused import onednn_bf16_cpu

    for dtype, label in (("float16", "float16-weights"),
                         ("auto", "bfloat16-weights" if onednn_bf16_cpu() else "float32")):
        out_d = tmp_path / "out" / f"pred_{dtype}.npz"
        assert main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(tmp_path / "kp.json"),
                     "--out", str(out_d), "--hypotheses", "2", "--steps", "1", "--aggregate",
                     "j_agg", "--focal", "700", "--seed", "1", "--dtype", dtype,
                     "--no-tf32"]) == 0
        with np.load(out_d) as z:
            assert str(z["precision"]) == label
            assert np.abs(z["poses_3d"] - poses).max() < 0.05


def test_cli_errors(tmp_path, model, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model)
    (tmp_path / "kp.json").write_text(json.dumps({"layout": "body25", "image_size": [1, 1],
                                                  "keypoints": [[[0, 0]] * 17]}))
    rc = main(["infer", "--checkpoint", str(ckpt), "--keypoints", str(tmp_path / "kp.json"),
               "--out", str(tmp_path / "o.npz")])
    assert rc == 2 and "body25" in capsys.readouterr().err
    rc = main(["render", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "no such prediction file" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "x.png").exists()


def test_uncertainty_is_the_joint_spread_of_the_hypotheses(model):
    """One window (T = F): the blend is that window, so the spread is joint_spread of the kept
    hypotheses, by hand the norm of the per-axis std over H; ``uncertainty`` is the same array."""
    from ddhpose.evaluation.uncertainty import joint_spread

    res = infer(model, _keypoints(F, 3), SIZE, hypotheses=4, steps=1,
                generator=torch.Generator().manual_seed(2))
    assert res.uncertainty is res.spread and res.spread.shape == (F, 17)
    np.testing.assert_allclose(res.spread, joint_spread(res.hypotheses), atol=1e-6)
    hyp = res.hypotheses.astype(np.float64)  # (T, H, J, 3)
    by_hand = np.sqrt(((hyp - hyp.mean(axis=1, keepdims=True)) ** 2).mean(axis=1).sum(axis=-1))
    np.testing.assert_allclose(res.spread, by_hand, atol=1e-6)
    assert res.spread[:, 1:].min() > 0
    np.testing.assert_array_equal(res.spread[:, 0], 0.0)  # the root is 0 in every hypothesis
